"""Figures read at a glance: one look per model and mode everywhere, a legend on every
figure, no empty panel, footers inside the image, and the paper comparisons."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tests.test_plots import make_results
from vae_bench.report.plots import plot_run
from vae_bench.report.style import Identity

CHUNKED = "temporal_chunks(4)"


def _run_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two models in full mode, one of them chunked too (quality and timing), with
    per-frame rows and a metric (psnr_vs_full) that is infinite everywhere."""
    sizes, frames = ((64, 64), (128, 128)), (5, 9)
    full = make_results(models=("beta", "alpha"), sizes=sizes, frames=frames)
    chunked = make_results(models=("alpha",), sizes=sizes, frames=frames)
    chunked = chunked.assign(mode=CHUNKED, cell="k" + chunked["cell"])
    chunked.loc[chunked["metric"] == "psnr", "value"] -= 0.5
    lossless = chunked[chunked["metric"] == "psnr"].assign(metric="psnr_vs_full", value=math.inf)
    results = pd.concat([full, chunked, lossless], ignore_index=True)
    cells = results[results["kind"] == "quality"].drop_duplicates("cell")
    frame_rows = []
    for cell in cells.itertuples():
        for metric, base in (("psnr", 30.0), ("ssim", 0.9)):
            for t in range(cell.frames):
                frame_rows.append(dict(
                    cell=cell.cell, model=cell.model, weights=cell.weights, mode=cell.mode,
                    dtype=cell.dtype, dataset=cell.dataset, height=cell.height,
                    width=cell.width, frames=cell.frames, metric=metric, frame=t,
                    group_position=0 if t == 0 else (t - 1) % 4 + 1,
                    value=base - 0.01 * t, n=4))  # fmt: skip
    return results, pd.DataFrame(frame_rows)


def _saved(draw: Callable[[], object]) -> dict[str, Figure]:
    """Every figure ``draw`` saves, by file stem (captured as it is saved)."""
    figures: dict[str, Figure] = {}
    original = Figure.savefig

    def capture(self: Figure, fname, *args, **kwargs):
        figures[Path(fname).stem] = self
        return original(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", capture)
        draw()
    return figures


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Figure]:
    """Every figure plot_run saves, by file stem."""
    results, frames = _run_rows()
    out = tmp_path_factory.mktemp("identity")
    return _saved(lambda: plot_run(results, out, frames=frames))


def _series_looks(fig: Figure) -> dict[str, tuple[str, object]]:
    """label -> (colour, line style or hatch) of every labelled artist in the axes."""
    looks: dict[str, tuple[str, object]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                looks.setdefault(line.get_label(), (to_hex(line.get_color()),
                                                    line.get_linestyle()))  # fmt: skip
        for container in ax.containers:
            bar = container.patches[0]
            if container.get_label().startswith("_"):
                continue
            looks.setdefault(container.get_label(), (to_hex(bar.get_facecolor()),
                                                     bar.get_hatch() or ""))  # fmt: skip
    return looks


def test_every_figure_has_a_legend_naming_what_it_draws(drawn: dict[str, Figure]) -> None:
    wanted = {"quality_vs_resolution", "quality_vs_clip_length", "throughput_vs_resolution",
              "memory_vs_clip_length", "time_memory_vs_resolution", "quality_vs_throughput",
              "modes_compared", "quality_by_frame", "quality_by_group_position"}  # fmt: skip
    assert wanted <= set(drawn)
    for name, fig in drawn.items():
        assert len(fig.legends) == 1, name
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert texts, name
        for label in _series_looks(fig):
            assert label in texts, (name, label)


def test_a_model_and_a_mode_look_the_same_in_every_figure(drawn: dict[str, Figure]) -> None:
    identity = Identity(["alpha", "beta"], ["full", CHUNKED])
    colour = {m: look.colour for m, look in identity.models.items()}
    assert colour["alpha"] != colour["beta"]
    seen: dict[str, set[str]] = {"alpha": set(), "beta": set()}
    for name, fig in drawn.items():
        for label, (col, style) in _series_looks(fig).items():
            model = label.split(" ")[0]
            seen[model].add(col)
            chunked = CHUNKED in label
            if isinstance(style, str) and style in ("-", "--", ":", "-.", "None"):
                assert (style != "-") == chunked, (name, label, style)
            else:  # bars: the mode's hatch
                assert (style != "") == chunked, (name, label, style)
        for ax in fig.axes:  # bubbles: the model's colour and marker
            for points in ax.collections:
                if isinstance(points, PathCollection) and len(points.get_offsets()):
                    assert to_hex(points.get_facecolor()[0], keep_alpha=False) in colour.values()
    assert seen == {"alpha": {colour["alpha"]}, "beta": {colour["beta"]}}
    # lines carry their model's marker too
    for line in drawn["quality_vs_resolution"].axes[0].get_lines():
        model = line.get_label().split(" ")[0]
        assert line.get_marker() == identity.models[model].marker


def test_a_metric_without_finite_values_gets_no_panel_and_a_note(
    drawn: dict[str, Figure],
) -> None:
    fig = drawn["quality_vs_resolution"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert "psnr_vs_full" not in titles and titles  # psnr, psnr_clip, ssim, lpips remain
    assert len(titles) == 4
    notes = " ".join(t.get_text() for t in fig.texts)
    assert "psnr_vs_full: no panel, no value to draw" in notes
    assert "infinite value(s) not drawn (lossless reconstruction)" in notes
    assert all(ax.get_lines() for ax in fig.axes if ax.get_visible())


def test_footers_are_wrapped_inside_the_figure(drawn: dict[str, Figure]) -> None:
    fig = drawn["quality_vs_resolution"]
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth() * fig.dpi
    note = fig.texts[-1]  # after the title
    assert note.get_text().startswith("psnr_vs_full")
    box = note.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= width
    legend = fig.legends[0].get_window_extent(renderer)
    assert box.y1 <= legend.y0  # under the legend, not over it


def test_quality_vs_throughput_pairs_rows_of_one_size(drawn: dict[str, Figure]) -> None:
    fig = drawn["quality_vs_throughput"]
    ax = fig.axes[0]
    assert ax.get_title().startswith("PSNR")
    bubbles = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(bubbles) == 3  # alpha full, alpha chunked, beta full
    results, _ = _run_rows()
    # at the largest size (9 frames, 128x128): x is encode clips/s, area ~ encode memory
    at = results[(results["frames"] == 9) & (results["height"] == 128)]
    enc = at[(at["phase"] == "encode") & (at["mode"] == "full") & (at["model"] == "beta")]
    tp = float(enc.loc[enc["metric"] == "clips_per_s", "value"].iloc[0])
    xs = sorted(float(b.get_offsets()[0][0]) for b in bubbles)
    assert any(math.isclose(x, tp) for x in xs)
    areas = {float(b.get_sizes()[0]) for b in bubbles}
    assert max(areas) == pytest.approx(900.0)


def test_modes_compared_draws_each_mode_of_the_chunked_model(drawn: dict[str, Figure]) -> None:
    fig = drawn["modes_compared"]
    psnr = next(ax for ax in fig.axes if ax.get_title().startswith("PSNR"))
    bars = [p for p in psnr.patches if isinstance(p, Rectangle)]
    assert len(bars) == 2  # alpha: full and chunked; beta has one mode, so it is left out
    heights = sorted(b.get_height() for b in bars)
    assert heights[1] - heights[0] == pytest.approx(0.5)
    hatches = {b.get_hatch() or "" for b in bars}
    assert "" in hatches and len(hatches) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["full", CHUNKED]


def test_identity_is_fixed_by_the_names_alone() -> None:
    one = Identity(["b", "a", "c"], ["full", "spatial_tiles(256,32)", CHUNKED])
    two = Identity(["c", "a", "b", "a"], [CHUNKED, "spatial_tiles(256,32)"])
    assert one.models == two.models and one.modes == two.modes
    assert one.mode("full").linestyle == "-"
    assert len({look.colour for look in one.models.values()}) == 3
    assert len({str(look.linestyle) for look in one.modes.values()}) == 3


def test_a_failed_model_keeps_every_colour(tmp_path: Path) -> None:
    ok = make_results(models=("a", "c"), sizes=((64, 64),), frames=(5,))
    failed = make_results(models=("b",), sizes=((64, 64),), frames=(5,), status="oom")
    results = pd.concat([ok, failed], ignore_index=True)
    figures = list(_saved(lambda: plot_run(results, tmp_path)).values())
    expected = Identity(["a", "b", "c"]).models
    for fig in figures:
        for line in fig.axes[0].get_lines():
            assert to_hex(line.get_color()) == expected[line.get_label()].colour


def test_all_zero_bars_say_so(tmp_path: Path) -> None:
    from vae_bench.report.temporal import plot_temporal

    rows = make_results(models=("identity",), sizes=((64, 64),), frames=(9,))
    rows = rows[rows["metric"] == "psnr"].assign(mode=CHUNKED)
    seams = pd.concat([rows.assign(metric=m, value=0.0)
                       for m in ("seam_psnr_drop", "seam_discontinuity")])  # fmt: skip
    paths: list[Path] = []
    figures = list(_saved(lambda: paths.extend(plot_temporal(seams, None, tmp_path))).values())
    assert {p.stem for p in paths} == {"seams"}
    for ax in figures[0].axes:
        assert "0 for every series shown" in [t.get_text() for t in ax.texts]
    assert np.allclose([p.get_height() for p in figures[0].axes[0].patches], 0.0)


def test_a_single_mode_figure_still_draws_that_modes_style(tmp_path: Path) -> None:
    rows = make_results(models=("a",), sizes=((64, 64), (128, 128)), frames=(5,))
    rows = rows[rows["kind"] == "quality"].assign(mode=CHUNKED)
    figures = list(_saved(lambda: plot_run(rows, tmp_path)).values())
    lines = [line for fig in figures for ax in fig.axes for line in ax.get_lines()]
    assert lines and {line.get_linestyle() for line in lines} == {"--"}
