"""The self-contained HTML report: tables, embedded figures, no network address."""

from __future__ import annotations

import base64
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from tests.report_fixtures import write_run
from vae_bench.report.compare import run_compare
from vae_bench.report.html import write_html_report

DATA = Path(__file__).parent / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Collector(HTMLParser):
    """Every tag and attribute, to check what a browser would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    return parser


def test_report_holds_tables_and_embedded_figures_and_no_urls(tmp_path):
    run = tmp_path / "paper"
    run.mkdir()
    results = pd.read_csv(DATA / "results_paper.csv", keep_default_na=False, na_values=[""])
    # a recorded message with an address: shown as text, never a fetchable URL
    results.loc[results.status == "oom", "message"] = "see https://example.org/oom for help"
    results.to_csv(run / "results.csv", index=False)

    path = write_html_report(run)
    assert path == run / "report.html"
    text = path.read_text()
    assert "<table" in text and "35.21" in text and "<strong>∞</strong>" in text
    assert "vae-bench report: paper" in text
    assert not re.search(r"https?://", text)
    assert "example.org/oom" in text  # the message is kept, only defused

    tags = _parse(text).tags
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert images
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # nothing else is loaded: no scripts, stylesheets links, frames or external sources
    assert not any(tag in ("script", "link", "iframe") for tag, _ in tags)
    assert all(not (attrs.get("href") or "").strip() for _, attrs in tags)
    # drawn afresh by plot_run (the run has no plots/ yet), one <img> per figure
    figures = {f"{kind} vs {axis}" for kind in ("quality", "throughput", "memory")
               for axis in ("resolution", "clip length")} | {
        "time memory vs resolution", "quality vs throughput"}
    alts = [attrs["alt"] for attrs in images]
    assert len(set(alts)) == len(alts) and set(alts) <= figures
    assert {"quality vs resolution", "quality vs clip length"} <= set(alts)


def test_report_uses_existing_plots_and_includes_comparisons(tmp_path):
    base = write_run(tmp_path, "base", seed=0)
    cand = write_run(tmp_path, "cand", seed=1, shift={("m1", "psnr"): -0.5})
    run_compare(base, cand, n_resamples=200)
    plots = cand / "plots"
    plots.mkdir()
    shutil.copy(next((cand / "compare").glob("*/deltas.png")), plots / "only_figure.png")
    text = write_html_report(cand, tmp_path / "out.html", layouts=("quality",)).read_text()
    assert "only figure" in text and "Comparison: cand_vs_base" in text
    images = [a for t, a in _parse(text).tags if t == "img"]
    assert len(images) == 2  # the plot found in plots/ and the comparison's deltas.png
    assert "Not drawn" not in text
    assert not re.search(r"https?://", text)


def test_time_breakdown_shows_each_quality_cell_and_what_bound_it():
    from vae_bench.report.html import _time_breakdown

    base = {"kind": "timing", "status": "ok", "model": "wf-vae-l", "dataset": "clips",
            "height": 256, "width": 256, "frames": 33, "n": 16, "cell": "q-1",
            "protocol": "timing:workers=4;timer=perf_counter+cuda-sync"}  # fmt: skip
    seconds = {"time_data_s": 1.0, "time_model_s": 6.0, "time_metrics_s": 2.0,
               "time_total_s": 10.0}  # fmt: skip
    rows = pd.DataFrame([{**base, "metric": m, "value": v} for m, v in seconds.items()]
                        + [{**base, "kind": "quality", "metric": "psnr", "value": 30.0}])
    text = _time_breakdown(rows)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", text)
    assert cells == ["wf-vae-l", "clips", "256x256x33", "16", "1.00 s (10%)", "6.00 s (60%)",
                     "2.00 s (20%)", "10.00 s", "model", "workers=4"]
    assert _time_breakdown(rows[rows.kind == "quality"]) == ""  # runs without timing rows
