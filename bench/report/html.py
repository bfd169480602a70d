"""One self-contained HTML file per run: tables, figures and failures, nothing fetched.

Figures are embedded as base64 PNG and styles are inline, so the file opens the same
offline, attached to a CI job or mailed: it refers to no other file and no network
address (addresses inside recorded messages are shown as text, never as links).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vae_bench.report.style import Identity
from vae_bench.report.tables import (
    LAYOUTS,
    Table,
    TableError,
    TableOptions,
    build_table,
)
from vae_bench.report.temporal import read_frames
from vae_bench.results import atomic_write_text, read_results
from vae_bench.samples import read_samples

DEFAULT_LAYOUTS = ("wf-vae", "quality", "efficiency")
_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e4e4e4; }
thead th { border-bottom: 2px solid #888; } td.num { text-align: right; white-space: nowrap; }
th.group { text-align: center; border-bottom: 1px solid #888; }
.ci { color: #777; font-size: 0.85em; } ul.notes { font-size: 0.85em; color: #444; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.bad { color: #b00020; } .meta td:first-child { color: #666; }
.swatch { display: inline-block; width: 2.2em; height: 0; vertical-align: middle;
          border-top-width: 3px; margin-right: 0.4em; }
.samples { display: flex; flex-wrap: wrap; gap: 1.5em; }
.samples img { image-rendering: pixelated; width: 100%; max-width: 640px; }
"""

_MARKER_NAMES = {"o": "circle", "s": "square", "^": "triangle up", "D": "diamond",
                 "v": "triangle down", "P": "plus", "X": "cross", "*": "star",
                 "<": "triangle left", ">": "triangle right"}  # fmt: skip
_LINE_NAMES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}


def _esc(text: object) -> str:
    """HTML-escaped text in which no network address stays in its fetchable form."""
    return html.escape(str(text)).replace("://", "&#58;//")


def table_html(table: Table) -> str:
    """A built table as an HTML ``<table>`` with its notes below."""
    out = ["<table>", "<thead>"]
    if table.grouped:
        out.append("<tr><th></th>" + "".join(
            f'<th class="group" colspan="{span}">{_esc(name)}</th>' if name
            else "<th></th>" * span for name, span in table.groups) + "</tr>")
    out.append("<tr><th>Model</th>" + "".join(f"<th>{_esc(c.header())}</th>"
                                              for c in table.columns) + "</tr>")
    out.append("</thead><tbody>")
    for label, row in zip(table.row_labels, table.cells, strict=True):
        cells = []
        for cell in row:
            text = _esc(cell.text)
            if cell.best:
                text = f"<strong>{text}</strong>"
            if cell.ci_text:
                text += f' <span class="ci">± {_esc(cell.ci_text)}</span>'
            cells.append(f'<td class="num">{text}</td>')
        out.append(f"<tr><td>{_esc(label)}</td>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in table.notes)
                   + "</ul>")
    return "\n".join(out)


def _embedded_figure(path: Path, alt: str, caption: str, css_class: str = "") -> str:
    """A PNG inlined as a data URI: the report is one file with no network addresses."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    attribute = f' class="{css_class}"' if css_class else ""
    return (f'<figure{attribute}><img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def _figure(path: Path) -> str:
    title = path.stem.replace("_", " ")
    return _embedded_figure(path, title, title)


def _key(identity: Identity) -> str:
    """The run's colours, markers and line styles, as every figure draws them."""
    rows = [f'<tr><td><span class="swatch" style="border-top: 3px solid {look.colour}">'
            f"</span>{_esc(name)}</td><td>{_esc(_MARKER_NAMES.get(look.marker, look.marker))}"
            "</td></tr>" for name, look in identity.models.items()]  # fmt: skip
    modes = [f'<tr><td><span class="swatch" style="border-top: 3px '
             f'{"solid" if look.linestyle == "-" else "dashed"} #444">'
             f"</span>{_esc(name)}</td><td>{_esc(_LINE_NAMES.get(str(look.linestyle), 'dash'))}"
             f" line, {_esc(look.hatch or 'plain')} bars</td></tr>"
             for name, look in identity.modes.items()]  # fmt: skip
    return ("<table><thead><tr><th>model</th><th>marker</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table><table><thead><tr><th>inference mode</th>"
            "<th>drawn as</th></tr></thead><tbody>" + "".join(modes) + "</tbody></table>")


def _samples(run_dir: Path, results: pd.DataFrame) -> str:
    """Each model's kept reconstructions (:mod:`vae_bench.samples`) beside its numbers."""
    found = read_samples(run_dir)
    if not found:
        return ""
    out = ["<p>Rows: original, reconstruction, |error| (8-bit, amplified, inferno: black = "
           "none). Columns: the frames named; the same clips for every model.</p>"]
    quality = results[(results["kind"] == "quality") & (results["status"] == "ok")]
    for model in dict.fromkeys(s["model"] for s in found):
        out.append(f"<h3>{_esc(model)}</h3>")
        for cell in (s for s in found if s["model"] == model):
            rows = quality[quality["cell"] == cell["cell"]].set_index("metric")["value"]
            numbers = ", ".join(f"{m} {float(rows[m]):.4g}" for m in ("psnr", "ssim", "lpips")
                                if m in rows.index)  # fmt: skip
            seams = f"; seam before frame {cell['seams'][0]}" if cell.get("seams") else ""
            head = (f"{cell['mode']}, {cell['dtype']}, {cell['frames']}x{cell['height']}x"
                    f"{cell['width']}{seams}" + (f" — {numbers}" if numbers else ""))
            out.append(f"<p>{_esc(head)}</p><div class=\"samples\">")
            frames = ", ".join(map(str, cell["shown_frames"]))
            for clip in cell["clips"]:
                out.append(_embedded_figure(cell["dir"] / clip["png"], f"{model} {clip['clip']}",
                                            f"clip {clip['clip']}, frames {frames}"))
            out.append("</div>")
    return "\n".join(out)


def _sample_pair(path: Path) -> str:
    caption = (f"{path.stem}: original, baseline and candidate reconstruction, baseline and "
               "candidate |error|")
    return _embedded_figure(path, path.stem, caption, css_class="samples")


def _metadata(run_dir: Path, results: pd.DataFrame) -> list[tuple[str, str]]:
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    items: list[tuple[str, str]] = []
    for key in ("run", "device_name", "started", "suite_version", "git_sha", "torch_version",
                "cuda_version", "python_version"):  # fmt: skip
        value = meta.get(key)
        if value in (None, "") and key in results.columns:
            values = sorted({str(v) for v in results[key].dropna()} - {""})
            value = ", ".join(values)
        if value not in (None, ""):
            items.append((key, str(value)))
    return items


def _status_summary(results: pd.DataFrame) -> str:
    cells = results.drop_duplicates("cell") if "cell" in results.columns else results
    counts = results.groupby("status").size().to_dict()
    parts = [f"{len(cells)} cells, {len(results)} rows"] + [
        f"{n} {status}" for status, n in sorted(counts.items())]
    return ", ".join(parts)


def _failures(results: pd.DataFrame) -> str:
    bad = results[results.status.isin(["oom", "error", "nonfinite"])]
    if bad.empty:
        return "<p>No cell failed.</p>"
    rows = ["<table><thead><tr><th>model</th><th>kind</th><th>size</th><th>phase/metric</th>"
            "<th>status</th><th>message</th></tr></thead><tbody>"]
    for row in bad.itertuples(index=False):
        size = f"{row.height}x{row.width}x{row.frames}"
        what = "/".join(str(v) for v in (row.phase, row.metric) if str(v) not in ("", "nan"))
        rows.append(f"<tr><td>{_esc(row.model)}</td><td>{_esc(row.kind)}</td>"
                    f"<td>{_esc(size)}</td><td>{_esc(what)}</td>"
                    f'<td class="bad">{_esc(row.status)}</td><td>{_esc(row.message)}</td></tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _clip_summary(run_dir: Path) -> str:
    path = run_dir / "clips.csv"
    if not path.exists():
        return ""
    clips = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if clips.empty or "status" not in clips.columns:
        return ""
    not_ok = clips[clips.status != "ok"]
    text = f"<p>{len(clips)} clip evaluations, {len(clips) - len(not_ok)} ok.</p>"
    if len(not_ok):
        reasons = not_ok.groupby(["status", "reason"]).size().reset_index(name="clips")
        text += "<table><thead><tr><th>status</th><th>reason</th><th>clips</th></tr></thead>"
        text += "<tbody>" + "".join(
            f"<tr><td>{_esc(r.status)}</td><td>{_esc(r.reason)}</td>"
            f'<td class="num">{r.clips}</td></tr>' for r in reasons.itertuples(index=False))
        text += "</tbody></table>"
    return text


TIME_STAGES = {"time_data_s": "waiting for data", "time_model_s": "model",
               "time_metrics_s": "metrics"}  # fmt: skip


def _time_breakdown(results: pd.DataFrame) -> str:
    """Where each quality cell's wall time went (its ``timing`` rows), and what bound it."""
    rows = results[(results.kind == "timing") & (results.status == "ok")]
    if rows.empty:
        return ""
    out = ["<table><thead><tr><th>model</th><th>dataset</th><th>size</th><th>clips</th>"
           + "".join(f"<th>{_esc(label)}</th>" for label in TIME_STAGES.values())
           + "<th>total</th><th>bound by</th><th>loading</th></tr></thead><tbody>"]
    for _, cell in rows.groupby("cell", sort=False):
        seconds = cell.set_index("metric").value
        total = float(seconds.get("time_total_s", float("nan")))
        first = cell.iloc[0]
        shares = {name: float(seconds.get(name, 0.0)) for name in TIME_STAGES}
        cells = "".join(f'<td class="num">{value:.2f} s ({value / total:.0%})</td>'
                        for value in shares.values())  # fmt: skip
        bound = TIME_STAGES[max(shares, key=shares.get)]
        loading = str(first.protocol).split(":", 1)[-1].split(";")[0]
        size = f"{first.height}x{first.width}x{first.frames}"
        out.append(f"<tr><td>{_esc(first.model)}</td><td>{_esc(first.dataset)}</td>"
                   f"<td>{_esc(size)}</td><td class=\"num\">{int(first.n)}</td>{cells}"
                   f'<td class="num">{total:.2f} s</td><td>{_esc(bound)}</td>'
                   f"<td>{_esc(loading)}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def render_html(
    run_dir: str | Path,
    *,
    layouts: Sequence[str] = DEFAULT_LAYOUTS,
    options: TableOptions | None = None,
    plots_dir: str | Path | None = None,
) -> str:
    """The report of one run as an HTML string (see :func:`write_html_report`)."""
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    name = str(results["run"].dropna().iloc[0]) if len(results) else run_dir.name
    unknown = [layout for layout in layouts if layout not in LAYOUTS]
    if unknown:
        raise TableError(f"layouts {unknown}: unknown; registered: {', '.join(LAYOUTS)}")
    body = [f"<h1>vae-bench report: {_esc(name)}</h1>", '<table class="meta">']
    body += [f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>"
             for k, v in _metadata(run_dir, results)]
    body.append(f"<tr><td>results</td><td>{_esc(_status_summary(results))}</td></tr></table>")

    body.append("<h2>Tables</h2>")
    for layout in layouts:
        body.append(f"<h3>{_esc(layout)}</h3>")
        try:
            body.append(table_html(build_table(results, layout, options)))
        except TableError as error:
            body.append(f"<p>Not drawn: {_esc(error)}</p>")

    body.append("<h2>Figures</h2>")
    with tempfile.TemporaryDirectory() as scratch:
        plots = Path(plots_dir) if plots_dir is not None else run_dir / "plots"
        pngs = sorted(plots.glob("*.png")) if plots.is_dir() else []
        if not pngs:
            from vae_bench.report.plots import plot_run

            drawn = plot_run(results, Path(scratch), frames=read_frames(run_dir))
            pngs = sorted(p for p in drawn if p.suffix == ".png")
        if pngs:
            body.append("<p>Every figure draws a model and an inference mode alike:</p>")
            body.append(_key(Identity.of(results, read_frames(run_dir))))
        body += [_figure(p) for p in pngs] or ["<p>No figure: no finished rows to draw.</p>"]
        samples = _samples(run_dir, results)
        if samples:
            body += ["<h2>Reconstructions</h2>", samples]

        timing = _time_breakdown(results)
        if timing:
            body += ["<h2>Where the time went (quality cells)</h2>", timing]
        body.append("<h2>Failures</h2>")
        body.append(_failures(results))
        clips = _clip_summary(run_dir)
        if clips:
            body += ["<h2>Clips</h2>", clips]
        for extra in sorted(run_dir.glob("compare/*/compare.md")):
            body.append(f"<h2>Comparison: {_esc(extra.parent.name)}</h2>")
            body.append(f"<pre>{_esc(extra.read_text())}</pre>")
            png = extra.parent / "deltas.png"
            if png.exists():
                body.append(_figure(png))
            for strip in sorted(extra.parent.glob("samples/*.png")):  # samples side by side
                body.append(_sample_pair(strip))
        gate = run_dir / "gate.md"
        if gate.exists():
            body += ["<h2>Gate</h2>", f"<pre>{_esc(gate.read_text())}</pre>"]
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>vae-bench: {_esc(name)}</title><style>{_STYLE}</style></head>")
    return head + "<body>\n" + "\n".join(body) + "\n</body></html>\n"


def write_html_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    layouts: Sequence[str] = DEFAULT_LAYOUTS,
    options: TableOptions | None = None,
    plots_dir: str | Path | None = None,
) -> Path:
    """Write ``<run>/report.html`` (or ``out``): the run's tables (every layout in
    ``layouts`` that its rows allow), its figures (``<run>/plots/*.png``, drawn afresh
    when absent) with the key to their colours and line styles, the kept reconstructions
    per model (``<run>/samples``), where each quality cell's time went, failed cells,
    skipped clips, and any comparison or gate summary saved in the run directory."""
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, render_html(run_dir, layouts=layouts, options=options,
                                        plots_dir=plots_dir))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for an HTML report command (dest names match :func:`write_html_report`)."""
    parser.add_argument("run_dir", help="run directory, e.g. reports/default")
    parser.add_argument("-o", "--out", default=None, help="file (default: <run>/report.html)")
    parser.add_argument("--layouts", nargs="+", default=list(DEFAULT_LAYOUTS),
                        choices=sorted(LAYOUTS), help="tables to include")
