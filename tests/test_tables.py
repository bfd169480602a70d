"""Paper tables from a hand-written results CSV against stored expected outputs.

``tests/data/results_paper.csv`` holds four models (the identity with infinite PSNR, two
registered presets and one model no registry knows), two datasets, CIs, a skipped LPIPS
row, an out-of-memory cell, ties at the printed precision, and smaller cells that the
default operating point must not pick. Set ``VAE_BENCH_UPDATE_EXPECTED=1`` to rewrite the
expected files after an intended change, then review their diff.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from vae_bench.report.table_formats import render, to_csv
from vae_bench.report.tables import (
    FORMATS,
    LAYOUTS,
    TableError,
    TableOptions,
    build_table,
    latent_channels,
    make_table,
    parse_resolution,
)
from vae_bench.results import read_results

DATA = Path(__file__).parent / "data"
RESULTS = DATA / "results_paper.csv"
EXPECTED = DATA / "expected"
CASES = {
    "wf-vae.md": ("wf-vae", "md", TableOptions()),
    "wf-vae.tex": ("wf-vae", "latex", TableOptions()),
    "wf-vae.csv": ("wf-vae", "csv", TableOptions()),
    "quality.md": ("quality", "md", TableOptions()),
    "quality-panda.tex": ("quality", "latex", TableOptions(datasets=("panda",), ci=False)),
    "efficiency-256.md": ("efficiency", "md", TableOptions(resolution=(256, 256))),
    "efficiency-256.tex": ("efficiency", "latex", TableOptions(resolution=(256, 256))),
}


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return read_results(RESULTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_table_matches_expected_file(results, name):
    layout, fmt, options = CASES[name]
    text = render(build_table(results, layout, options), fmt)
    path = EXPECTED / name
    if os.environ.get("VAE_BENCH_UPDATE_EXPECTED") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def _column(table, key):
    index = [j for j, c in enumerate(table.columns) if c.key == key]
    assert len(index) == 1, [c.key for c in table.columns]
    return {label: row[index[0]] for label, row in zip(table.row_labels, table.cells,
                                                       strict=True)}


def test_bold_best_and_ties_at_printed_precision(results):
    table = build_table(results, "wf-vae")
    ssim = _column(table, "quality:panda:ssim")
    # 0.90118 and 0.90123 both print as 0.9012: a reader cannot tell them apart
    assert ssim["wf-vae-l-16ch"].text == ssim["sd-vae-ft-mse"].text == "0.9012"
    assert ssim["wf-vae-l-16ch"].best and ssim["sd-vae-ft-mse"].best
    assert not ssim["acme-vae"].best
    lpips = _column(table, "quality:panda:lpips")  # lower is better, exact tie
    assert [k for k, c in lpips.items() if c.best] == ["acme-vae", "wf-vae-l-16ch"]
    assert lpips["sd-vae-ft-mse"].text == "skipped"
    psnr = _column(table, "quality:webvid:psnr")  # identity: infinite and best
    assert psnr["identity"].text == "∞" and psnr["identity"].best
    assert psnr["identity"].ci_text == ""
    md = render(table, "md")
    assert "| **∞** |" in md and "**0.9012** ± 0.0062" in md
    assert "\\textbf{$\\infty$}" in render(table, "latex")


def test_ci_half_width_from_the_results(results):
    table = build_table(results, "quality")
    cell = _column(table, "quality:webvid:psnr")["wf-vae-l-16ch"]
    row = results[(results.model == "wf-vae-l-16ch") & (results.metric == "psnr")
                  & (results.height == 256) & (results.dataset == "webvid")].iloc[0]
    assert cell.text == f"{row.value:.2f}"
    assert cell.ci_text == f"{(row.ci_high - row.ci_low) / 2:.2f}"
    no_ci = build_table(results, "quality", TableOptions(ci=False))
    assert all(c.ci_text == "" for row in no_ci.cells for c in row)


def test_default_operating_point_and_footnote(results):
    table = build_table(results, "wf-vae")
    notes = "\n".join(table.notes)
    assert "at 256x256, 33 frames requested (33 used; acme-vae 32)" in notes  # largest
    assert "encode at 512x512" in notes  # efficiency: largest with a finished value
    assert "NVIDIA H100 80GB HBM3" in notes and "float32" in notes
    assert "n = 40–50 clips" in notes
    assert "Protocol (webvid)" in notes and "timer=cuda-events" in notes
    assert "rFVD on panda: not measured" in notes
    assert "OOM: out of memory at encode 512x512x33" in notes
    assert "LPIPS weights not in the torchvision cache" in notes
    memory = _column(table, "efficiency:encode:peak_allocated_mb")
    assert memory["sd-vae-ft-mse"].text == "OOM"
    assert memory["wf-vae-l-16ch"].text == f"{17408 / 1024:.1f}"


def test_latent_channels_from_preset_configs_without_building():
    # facts of the releases: SD KL-f8 has 4 latent channels, WF-VAE-L 16, WF-VAE-S 8
    assert latent_channels("sd-vae-ft-mse")[0] == 4
    assert latent_channels("wf-vae-l-16ch")[0] == 16
    assert latent_channels("wf-vae-s-8ch")[0] == 8
    assert latent_channels("acme-vae") == (None, "not a registered preset")
    assert latent_channels("identity")[0] is None
    assert latent_channels("identity", build=True)[0] == 3  # cheap to build: the spec


def test_options_filter_and_order(results):
    table = build_table(results, "efficiency", TableOptions(
        resolution=(256, 256), models=("acme-vae", "wf-vae-l-16ch")))
    assert table.row_labels == ("acme-vae (random weights)", "wf-vae-l-16ch (random weights)")
    assert all("efficiency" in c.key or c.key.startswith("params") for c in table.columns)


def test_phase_option_replaces_the_layouts_phase(results):
    table = build_table(results, "wf-vae", TableOptions(phase="decode"))
    labels = [c.header() for c in table.columns if c.key.startswith("efficiency:")]
    assert labels == ["Decode TP (clips/s) ↑", "Decode Mem. (GiB) ↓"]
    throughput = _column(table, "efficiency:decode:clips_per_s")
    assert throughput["wf-vae-l-16ch"].text == f"{1 / 3.3:.3f}"  # 512x512 decode: 3.3 s
    merged = build_table(results, "efficiency", TableOptions(phase="encode"))
    assert len([c for c in merged.columns if c.key.startswith("efficiency:")]) == 3
    with pytest.raises(TableError, match="present: decode, encode"):
        build_table(results, "wf-vae", TableOptions(phase="roundtrip"))


def test_csv_is_machine_readable(results):
    """Numeric columns read back numeric (empty where nothing was measured), whole numbers
    as integers, a failure in a status column, and no footnote lines in the file."""
    text = to_csv(build_table(results, "wf-vae"))
    frame = pd.read_csv(io.StringIO(text)).set_index("model")
    assert list(frame.index) == ["acme-vae", "identity", "sd-vae-ft-mse", "wf-vae-l-16ch"]
    psnr = frame["webvid PSNR (dB) ↑"]
    assert math.isinf(psnr["identity"]) and psnr["wf-vae-l-16ch"] == pytest.approx(35.2114)
    for column in frame.columns:
        if not column.endswith(" status"):
            assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert "4.0" not in text.splitlines()[3] and frame.loc["sd-vae-ft-mse", "Latent ch."] == 4
    assert math.isnan(frame.loc["identity", "Latent ch."])  # not declared: empty
    memory = "Encode Mem. (GiB) ↓"
    assert math.isnan(frame.loc["sd-vae-ft-mse", memory])
    assert frame.loc["sd-vae-ft-mse", f"{memory} status"] == "oom"
    assert frame.loc["sd-vae-ft-mse", "panda LPIPS ↓ status"] == "skipped"
    assert "#" not in text and "—" not in text


def test_csv_footnotes_go_beside_the_file(tmp_path, capsys):
    out = tmp_path / "table.csv"
    text = make_table(RESULTS, "wf-vae", "csv", output=out)
    notes = (tmp_path / "table.notes.txt").read_text()
    assert out.read_text() == text and "Protocol (webvid)" in notes
    assert "Device: NVIDIA H100 80GB HBM3" in notes and capsys.readouterr().err == ""
    make_table(RESULTS, "wf-vae", "csv")  # to stdout: the notes go to stderr
    assert "Device: NVIDIA H100" in capsys.readouterr().err


@pytest.mark.parametrize("options,match", [
    (TableOptions(resolution=(1024, 1024)), "present: 128x128, 256x256"),
    (TableOptions(frames=17), "present \\(requested\\): 33"),
    (TableOptions(dtype="float16"), "present: float32"),
    (TableOptions(models=("nope",)), "models nope"),
    (TableOptions(datasets=("kinetics",)), "present: webvid, panda"),
])  # fmt: skip
def test_bad_options_name_the_allowed_values(results, options, match):
    with pytest.raises(TableError, match=match):
        build_table(results, "wf-vae", options)


def test_no_cells_for_the_layout_names_what_is_present(results):
    only_quality = results[results.kind == "quality"]
    with pytest.raises(TableError, match="no efficiency cells; present: no efficiency cells"):
        build_table(only_quality, "efficiency")
    chunked = results.assign(mode=results["mode"].where(results.kind == "efficiency",
                                                        "temporal_chunks(4)"))
    with pytest.raises(TableError, match=r"no efficiency cells with mode=temporal_chunks\(4\); "
                       "present: efficiency cells have mode full; dtype float32"):
        build_table(chunked, "efficiency", TableOptions(mode="temporal_chunks(4)"))


def test_bad_layout_format_and_resolution(results, tmp_path):
    with pytest.raises(TableError, match="registered: "):
        build_table(results, "no-such-layout")
    with pytest.raises(ValueError, match="allowed: md, latex, csv"):
        render(build_table(results, "quality"), "html")
    with pytest.raises(TableError, match="allowed: md, latex, csv"):
        make_table(RESULTS, "quality", "html")
    with pytest.raises(TableError, match="HEIGHTxWIDTH"):
        parse_resolution("big")
    assert parse_resolution("256") == (256, 256) and parse_resolution("256x448") == (256, 448)
    with pytest.raises(TableError, match="lack column\\(s\\) metric"):
        build_table(results.drop(columns=["metric"]), "quality")


def test_make_table_writes_the_file(tmp_path):
    out = tmp_path / "table.tex"
    text = make_table(RESULTS, "quality", "latex", resolution="256", output=out)
    assert out.read_text() == text and text.startswith("% vae-bench table")
    assert set(FORMATS) == {"md", "latex", "csv"} and {"wf-vae", "quality",
                                                       "efficiency"} <= set(LAYOUTS)
