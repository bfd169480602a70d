"""The comparisons video-VAE papers make their case with, drawn from any run with the data.

- ``quality_vs_throughput``: reconstruction quality against encode throughput, bubble area
  proportional to encode peak memory (WF-VAE's Fig. 1): the trade-off in one picture.
  Quality and efficiency rows are paired at the same model, mode, dtype and clip size.
- ``modes_compared``: each model's inference modes side by side, quality and encode
  cost (WF-VAE's Table 5, block-wise vs direct inference, as bars): what chunking or
  tiling costs in quality and saves in memory.

Encode/decode time and memory against resolution (its Fig. 4) is
``time_memory_vs_resolution`` of :mod:`vae_bench.report.plots`; quality by position in
the temporal group (IV-VAE's finding) is in :mod:`vae_bench.report.temporal`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from vae_bench.report.plots import (
    CUDA_MEMORY_METRIC,
    HOST_MEMORY_METRIC,
    LATENCY_METRIC,
    _memory_rows,
    _save,
    drawable,
    figure_legend,
    left_out,
    new_figure,
    plain_log_labels,
)
from vae_bench.report.style import Identity, footer, series_label

#: Quality metrics of the paper figures, with their axis labels.
METRICS: dict[str, str] = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}
THROUGHPUT = "clips_per_s"
#: Bubble area (points²) of the largest peak memory in a figure.
MAX_AREA = 900.0
SIZE = ["height", "width", "frames"]
PAIR_KEYS = ["model", "mode", "dtype", *SIZE]


def _series_cells(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys``, the rows at its largest size: longest clip, then most pixels."""
    if rows.empty:
        return rows
    ranked = rows.assign(_px=rows["height"] * rows["width"]).sort_values(
        ["frames", "_px"], ascending=False
    )
    best = ranked.groupby(keys, sort=False)[SIZE].first().reset_index()
    return rows.merge(best, on=[*keys, *SIZE])


def _mb(value: float) -> str:
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MB"


def _encode_costs(df: pd.DataFrame) -> pd.DataFrame:
    """Encode throughput, time and peak memory per model, mode, dtype and size."""
    eff = df[(df["kind"] == "efficiency") & (df["phase"] == "encode")]
    memory = _memory_rows(eff)
    parts = {
        "throughput": eff[eff["metric"] == THROUGHPUT],
        "time": eff[eff["metric"] == LATENCY_METRIC],
        "memory": memory,
    }
    out = None
    for name, part in parts.items():
        part = part[drawable(part["value"])]
        table = part.groupby(PAIR_KEYS)["value"].mean().rename(name).reset_index()
        out = table if out is None else out.merge(table, on=PAIR_KEYS, how="outer")
    assert out is not None
    out.attrs["memory_metric"] = "/".join(sorted(set(memory["metric"])))
    return out


def _memory_words(metric: str) -> str:
    return {CUDA_MEMORY_METRIC: "CUDA allocator peak", HOST_MEMORY_METRIC: "peak RSS"}.get(
        metric, "peak memory (CUDA allocator on GPU, RSS on CPU)"
    )


def quality_vs_throughput(df: pd.DataFrame, out_dir: Path, identity: Identity) -> list[Path]:
    """Quality against encode clips/s, bubble area = encode peak memory (see module)."""
    quality = df[(df["kind"] == "quality") & df["metric"].isin(list(METRICS))]
    costs = _encode_costs(df)
    pairs = quality.merge(costs, on=PAIR_KEYS, how="left")
    notes = []
    unpaired = pairs[pairs["throughput"].isna()].drop_duplicates(["model", "mode"])
    if len(unpaired):
        names = ", ".join(f"{r.model} ({r.mode})" for r in unpaired.itertuples())
        notes.append(f"not drawn, no encode timing at their quality cells' size: {names}")
    pairs = pairs[pairs["throughput"].notna() & pairs["memory"].notna()]
    notes += [left_out(METRICS[m], pairs.loc[pairs["metric"] == m, "value"]) for m in METRICS
              if (pairs["metric"] == m).any()]  # fmt: skip
    pairs = _series_cells(pairs[drawable(pairs["value"])], ["model", "mode", "dtype", "metric"])
    metrics = [m for m in METRICS if (pairs["metric"] == m).any()]
    if not metrics:
        return []
    top = float(pairs["memory"].max())
    sizes = sorted({f"{r.frames}x{r.height}x{r.width}" for r in pairs.itertuples()})
    fig, axes = new_figure(len(metrics), "Quality vs encode throughput (bubble area = encode "
                           f"peak memory), T x H x W {', '.join(sizes)}")  # fmt: skip
    handles: dict[str, object] = {}
    several_modes = pairs["mode"].nunique() > 1
    for ax, metric in zip(axes, metrics, strict=True):
        part = pairs[pairs["metric"] == metric].sort_values(["model", "mode", "dtype"])
        for row in part.itertuples():
            look, mode = identity.model(row.model), identity.mode(row.mode)
            ax.scatter(row.throughput, row.value, s=MAX_AREA * row.memory / top,
                       color=look.colour, marker=look.marker, alpha=0.55, hatch=mode.hatch,
                       edgecolors="#222222", linewidths=0.8)  # fmt: skip
            ax.annotate(_mb(row.memory), (row.throughput, row.value), fontsize=8,
                        xytext=(6, 6), textcoords="offset points", color="#333333")  # fmt: skip
            label = series_label(row.model, {"mode": row.mode} if several_modes else {})
            handles.setdefault(label, Line2D([], [], color=look.colour, marker=look.marker,
                                             linestyle="", markersize=9))  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.2)
        plain_log_labels(ax, "x")
        ax.set_title(METRICS[metric])
        ax.set_xlabel("encode throughput (clips / s, log)")
        ax.set_ylabel(METRICS[metric])
        ax.grid(True, alpha=0.3)
    figure_legend(fig, dict(sorted(handles.items())))
    memory = _memory_words(costs.attrs["memory_metric"])
    notes.insert(0, f"Bubble area proportional to encode {memory} (largest {_mb(top)});"
                 " quality and timing at the same clip size.")  # fmt: skip
    footer(fig, notes)
    return _save(fig, out_dir, "quality_vs_throughput")


def modes_compared(df: pd.DataFrame, out_dir: Path, identity: Identity) -> list[Path]:
    """Each model's inference modes side by side (see module); drawn when some model was
    measured under two or more modes."""
    quality = df[(df["kind"] == "quality") & df["metric"].isin(list(METRICS))]
    quality = quality[["model", "mode", "dtype", *SIZE, "metric", "value"]]
    costs = _encode_costs(df).melt(id_vars=PAIR_KEYS, value_vars=["memory", "time"],
                                   var_name="metric", value_name="value")  # fmt: skip
    rows = pd.concat([quality, costs], ignore_index=True).dropna(subset=["value"], how="all")
    several = rows.groupby(["model", "metric"])["mode"].transform("nunique") >= 2
    rows = rows[several]
    if rows.empty:
        return []
    labels = {
        **METRICS,
        "memory": "encode peak memory (MB) ↓",
        "time": "encode time per clip (s) ↓",
    }
    order = [m for m in labels if (rows["metric"] == m).any()]
    notes = [left_out(labels[m], rows.loc[rows["metric"] == m, "value"]) for m in order]
    rows = rows[drawable(rows["value"])]
    # one size per model and metric: the largest at which its modes were measured
    rows = _series_cells(rows, ["model", "metric", "mode"])
    metrics = [m for m in order if (rows["metric"] == m).any()]
    if not metrics:
        return []
    sizes = sorted({f"{r.frames}x{r.height}x{r.width}" for r in rows.itertuples()})
    fig, axes = new_figure(len(metrics), "Inference modes compared (e.g. block-wise vs direct),"
                           f" T x H x W {', '.join(sizes)}")  # fmt: skip
    modes = sorted(set(rows["mode"]), key=lambda m: (m != "full", m))
    for ax, metric in zip(axes, metrics, strict=True):
        part = rows[rows["metric"] == metric]
        models = sorted(set(part["model"]))
        width = 0.8 / len(modes)
        for j, mode in enumerate(modes):
            for i, model in enumerate(models):
                cell = part[(part["model"] == model) & (part["mode"] == mode)]
                if cell.empty:
                    continue
                ax.bar(i - 0.4 + width * (j + 0.5), float(cell["value"].mean()), width=width,
                       **identity.bar(model, mode))  # fmt: skip
        ax.set_xticks(range(len(models)), models, rotation=15)
        ax.set_title(labels[metric])
        ax.grid(True, axis="y", alpha=0.3)
    handles = {m: Patch(facecolor="white", edgecolor="#222222", hatch=identity.mode(m).hatch)
               for m in modes}  # fmt: skip
    figure_legend(fig, handles, "inference mode (bar colour: model)")
    footer(fig, notes)
    return _save(fig, out_dir, "modes_compared")


def plot_paper(df: pd.DataFrame, out_dir: Path, identity: Identity) -> list[Path]:
    """The figures of this module that ``df`` (ok rows) has the data for."""
    if "mode" not in df.columns or "dtype" not in df.columns:
        return []
    return quality_vs_throughput(df, out_dir, identity) + modes_compared(df, out_dir, identity)
