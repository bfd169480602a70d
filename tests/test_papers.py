"""Paper protocols: the published data file, the paper sweeps, `table --published`.

The published numbers are checked against values quoted independently of the data file
(the WF-VAE figures as the project's specification lists them). The rendering test runs
a real, tiny sweep on synthetic clips and compares every difference the table prints with
one computed here from ``results.csv``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from vae_bench import sweeps
from vae_bench.cli import main
from vae_bench.report.published import (
    CITATION,
    PublishedError,
    data_file,
    list_papers,
    load_published,
    operating_point,
    tolerances,
    with_published,
)
from vae_bench.report.tables import TableOptions, build_table, render
from vae_bench.results import read_results
from vae_bench.runner import plan, run_sweep
from vae_bench.sweep import SweepError, load_sweep, parse_sweep

PAPER_SWEEPS = sorted(name for name in sweeps.shipped() if name.startswith("papers/"))

# WF-VAE (arXiv 2411.17459) values as the specification quotes them:
# (table, row, bench_dataset, mode) -> {metric: value}
QUOTED = {
    ("Table 1", "WF-VAE-L (Ours), Chn 16", "webvid-val"): dict(psnr=35.76, ssim=0.9430,
                                                              lpips=0.0230, rfvd=54.36),
    ("Table 1", "WF-VAE-L (Ours), Chn 16", "panda70m-val"): dict(psnr=35.87, ssim=0.9538,
                                                                lpips=0.0175, rfvd=39.40),
    ("Table 1", "CogVideoX-VAE", "webvid-val"): dict(psnr=35.72, ssim=0.9434, lpips=0.0277,
                                                     rfvd=59.83),
    ("Table 1", "CogVideoX-VAE", "panda70m-val"): dict(psnr=35.79, ssim=0.9527, lpips=0.0198,
                                                       rfvd=43.23),
    ("Table 1", "WF-VAE-L (Ours), Chn 4", "webvid-val"): dict(psnr=32.32, ssim=0.8920,
                                                             lpips=0.0513, rfvd=186.00),
    ("Table 1", "WF-VAE-S (Ours), Chn 4", "panda70m-val"): dict(psnr=31.27, ssim=0.9025,
                                                               lpips=0.0420, rfvd=146.91),
    ("Table 1", "OD-VAE", "webvid-val"): dict(psnr=30.69, ssim=0.8635, lpips=0.0553,
                                              rfvd=255.92),
    ("Table 1", "SD-VAE", "panda70m-val"): dict(psnr=30.46, ssim=0.8896, lpips=0.0395,
                                                rfvd=182.99),
    ("Table 5", "OD-VAE, BWI no", "panda70m-val"): dict(psnr=30.31, lpips=0.0439),
    ("Table 5", "OD-VAE, BWI yes", "panda70m-val"): dict(psnr=28.51, lpips=0.0552),
    ("Table 5", "CogVideoX, BWI yes", "panda70m-val"): dict(psnr=35.41, lpips=0.0218),
    ("Table 5", "WF-VAE-L (Ours), Chn 16, BWI yes", "panda70m-val"): dict(psnr=35.87,
                                                                         lpips=0.0175),
}
# Values read off the other papers' tables for this test, each checked against a relation
# the paper states in its text or a repeat in another table (see the comments):
# (paper, table, row, bench_dataset, mode) -> {metric: value}
QUOTED_OTHERS = {
    # OD-VAE Sec. 4.2: OD-VAE is 0.97 dB and 0.0315 SSIM above SD-VAE on WebVid, 0.0128 and
    # 0.0125 SSIM above CV-VAE and OPS-VAE; LPIPS 0.0219 below CV-VAE on Panda-70M
    ("OD-VAE", "Table 1", "OD-VAE", "webvid-val", "full"): dict(psnr=31.16, ssim=0.8694,
                                                                 lpips=0.0586),
    ("OD-VAE", "Table 1", "SD-VAE", "webvid-val", "full"): dict(psnr=30.19, ssim=0.8379),
    ("OD-VAE", "Table 1", "CV-VAE", "webvid-val", "full"): dict(ssim=0.8566),
    ("OD-VAE", "Table 1", "OPS-VAE", "webvid-val", "full"): dict(ssim=0.8569),
    ("OD-VAE", "Table 1", "OD-VAE", "panda70m-val", "full"): dict(psnr=30.49, ssim=0.8970,
                                                                   lpips=0.0454),
    ("OD-VAE", "Table 1", "CV-VAE", "panda70m-val", "full"): dict(lpips=0.0673),
    ("OD-VAE", "Table 4", "without temporal tiling", "webvid-val", "full"): dict(
        psnr=31.05, lpips=0.0589),
    ("OD-VAE", "Table 4", "with temporal tiling", "webvid-val", "block-wise"): dict(
        psnr=30.98, lpips=0.0591),
    # LiteVAE: Table 2(b) repeats the ImageNet 128, 16x16x4 rows; Tables 17 and 21 repeat
    # the ImageNet 256, 32x32x4 LiteVAE row
    ("LiteVAE (NeurIPS 2024)", "Table 1", "ImageNet 128, 16x16x4, VAE", "imagenet-val",
     "full"): dict(rfid=4.54, lpips=0.164, psnr=24.25, ssim=0.69),
    ("LiteVAE (NeurIPS 2024)", "Table 1", "ImageNet 128, 16x16x4, LiteVAE", "imagenet-val",
     "full"): dict(rfid=4.40, lpips=0.164, psnr=24.49, ssim=0.71),
    ("LiteVAE (NeurIPS 2024)", "Table 1", "ImageNet 256, 32x32x4, LiteVAE", "imagenet-val",
     "full"): dict(rfid=0.87, lpips=0.157, psnr=26.02, ssim=0.74),
    ("LiteVAE (NeurIPS 2024)", "Table 1", "ImageNet 256, 32x32x12, LiteVAE", "imagenet-val",
     "full"): dict(rfid=0.23, lpips=0.072, psnr=30.91, ssim=0.88),
}
QUOTED_EFFICIENCY = {  # Sec. 4.2: encode at 512x512, 33 frames, float32, H100
    "wf-vae-l-16ch": (7170, 0.0513), "od-vae-4ch": (31944, 0.0945),
    "cogvideox-2b-vae": (35849.33, 0.1810), "": (55664, 0.3731),
}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return load_published()


# ------------------------------------------------------------------ the data file


def test_every_published_row_names_its_source(published):
    assert len(published) > 100
    for column in CITATION:
        assert (published[column].str.strip() != "").all(), column
    # every row's sweep is a shipped paper sweep, and every paper sweep has rows
    assert {f"papers/{s}" for s in published.sweep} == set(PAPER_SWEEPS)
    # a row's preset is a registered one (or empty: no preset reproduces it)
    from vae_bench.adapters import presets

    assert set(published.preset) - {""} <= set(presets())
    # one value per (table, row, dataset, metric, mode)
    key = ["paper", "table", "row", "bench_dataset", "metric", "mode"]
    assert not published.duplicated(key).any()


def test_published_values_equal_the_quoted_ones(published):
    for (table, row, dataset), metrics in QUOTED.items():
        for metric, value in metrics.items():
            hit = published[(published.paper == "WF-VAE (CVPR 2025)")
                            & (published.table == table) & (published.row == row)
                            & (published.bench_dataset == dataset)
                            & (published.metric == metric)]
            assert len(hit) == 1, (table, row, dataset, metric)
            assert hit.value.iloc[0] == value
    fig4 = published[published.sweep == "wf-vae-fig4"]
    for preset, (memory, seconds) in QUOTED_EFFICIENCY.items():
        rows = fig4[fig4.preset == preset]
        assert rows[rows.metric == "memory"].value.tolist() == [memory]
        assert rows[rows.metric == "latency_s"].value.tolist() == [seconds]
    assert (fig4.ratio_to == "wf-vae-l-16ch").all()
    # the printed precision travels with the value
    row = published[(published.table == "Table 1") & (published.metric == "rfvd")
                    & (published.row == "WF-VAE-L (Ours), Chn 4")]
    assert row.decimals.tolist() == [2, 2]


def test_other_papers_values_equal_the_quoted_ones(published):
    for (paper, table, row, dataset, mode), metrics in QUOTED_OTHERS.items():
        for metric, value in metrics.items():
            hit = published[(published.paper == paper) & (published.table == table)
                            & (published.row == row) & (published.bench_dataset == dataset)
                            & (published["mode"] == mode) & (published.metric == metric)]
            assert hit.value.tolist() == [value], (paper, table, row, dataset, metric)
    # OD-VAE Table 1 repeats the Open-Sora Plan v1.2 report's values model for model
    od = published[(published.sweep == "od-vae-table1") & (published.preset == "od-vae-4ch")]
    report = published[(published.sweep == "open-sora-plan-v1.2-vae")
                       & (published.preset == "od-vae-4ch")]
    key = ["bench_dataset", "metric"]
    assert od.set_index(key).value.sort_index().equals(report.set_index(key).value.sort_index())
    # efficiency tables: one reference model each, itself a published row of the table
    for sweep, ref, n in (("od-vae-table3", "od-vae-4ch", 4), ("litevae-table3",
                                                                "sd-vae-ft-mse", 10)):
        rows = published[published.sweep == sweep]
        assert len(rows) == n and set(rows.ratio_to) == {ref} and ref in set(rows.preset)
    lite = published[published.sweep == "litevae-table3"].set_index(["preset", "metric"]).value
    assert lite[("lite-vae-b", "memory")] == 3155 and lite[("sd-vae-ft-mse", "clips_per_s")] == 68


def test_tolerance_is_the_largest_spread_of_repeated_reports(published):
    tol = tolerances(published)
    # cv-vae on Panda-70M: 30.18 (WF-VAE Table 1) vs 29.57 (Open-Sora Plan v1.2 report);
    # od-vae-4ch on WebVid for the others: WF-VAE Table 1 vs the same report
    assert tol["psnr"] == pytest.approx(30.18 - 29.57)
    assert tol["ssim"] == pytest.approx(0.8694 - 0.8635)
    assert tol["lpips"] == pytest.approx(0.0586 - 0.0553)
    assert "rfvd" not in tol  # only Table 1 reports it: no repeat, no spread


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.assign(source=[""] + list(d.source[1:])), "source must not be empty"),
    (lambda d: d.assign(value=["n/a"] + list(d.value[1:])), "is not a number"),
    (lambda d: d.assign(mode=["tiled"] + list(d["mode"][1:])), "mode 'tiled'"),
    (lambda d: d.drop(columns=["ratio_to"]), "missing column"),
    (lambda d: d.assign(resolution=["256"] + list(d.resolution[1:])), "HEIGHTxWIDTH"),
])
def test_bad_published_rows_are_named(tmp_path, edit, message):
    raw = pd.read_csv(data_file(), dtype=str,
                      keep_default_na=False)
    path = tmp_path / "published.csv"
    edit(raw).to_csv(path, index=False)
    with pytest.raises(PublishedError, match=message):
        load_published(path)


# ------------------------------------------------------------------ the sweeps


def test_papers_command_lists_every_paper_sweep(capsys):
    assert main(["papers"]) == 0
    out = capsys.readouterr().out
    for name in PAPER_SWEEPS:
        assert name in out
    assert "not reproducible here" in out
    assert list_papers().startswith("Paper protocols")


_BUILT: dict[str, object] = {}


@pytest.fixture
def cached_builds(monkeypatch):
    """Build each preset's random model once for all sweeps (planning builds every model)."""
    from vae_bench.adapters.base import Preset

    original = Preset.create

    def create(self, weights="random"):
        if str(weights) != "random":
            return original(self, weights)
        if self.name not in _BUILT:
            _BUILT[self.name] = original(self, weights)
        return _BUILT[self.name]

    monkeypatch.setattr(Preset, "create", create)


def _offline(sweep, tmp_path: Path):
    """The sweep with offline stand-ins for what `vae-bench fetch` provides: random model
    weights (each model keeps the kinds of cells its protocol asks for) and, for metric
    networks absent from this machine, skipped LPIPS, a random I3D and an empty file where
    rFID's Inception weights go (planning checks the file is there; it loads nothing)."""
    models = tuple(
        dataclasses.replace(m, weights="random",
                            quality=m.quality if m.quality is not None
                            else m.weights != "random")
        for m in sweep.models)
    inception = tmp_path / "inception.pth"
    inception.touch()
    quality = dataclasses.replace(sweep.quality, lpips_missing="skip", fvd_missing="random",
                                  fid_weights=str(inception))
    return dataclasses.replace(sweep, models=models, quality=quality)


# the test sets the paper sweeps name (folders of videos or images, absent here)
PAPER_DATASETS = sorted({d for n in PAPER_SWEEPS for d in load_sweep(n).datasets} - {"synthetic"})


def _datasets_file(tmp_path: Path, roots: bool) -> Path:
    shipped = yaml.safe_load(sweeps.datasets_file().read_text())
    for name in PAPER_DATASETS:
        root = tmp_path / name
        if roots:
            root.mkdir()
            file = "image.png" if shipped[name].get("media") == "images" else "clip.mp4"
            (root / file).write_bytes(b"")  # planning lists files, it decodes none
        shipped[name]["root"] = str(root)
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(shipped))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_SWEEPS)
def test_paper_sweep_plans(name, tmp_path, cached_builds):
    sweep = load_sweep(name)
    # quality protocols name the official weights; efficiency ones run random weights
    for entry in sweep.models:
        assert entry.weights in ("official", "random"), entry
        if entry.weights == "random":
            assert not entry.quality
    offline = dataclasses.replace(_offline(sweep, tmp_path),
                                  datasets_file=str(_datasets_file(tmp_path, roots=True)))
    cells = plan(offline, device="cpu").cells
    assert {c.model for c in cells} == {m.preset for m in sweep.models}
    assert {(c.height, c.width) for c in cells} == set(sweep.resolutions)
    assert {c.dtype for c in cells} == set(sweep.dtypes)
    quality = [c for c in cells if c.kind == "quality"]
    if any(m.weights == "official" for m in sweep.models):
        assert {c.dataset for c in quality} == set(sweep.datasets)
        assert not [c for c in cells if c.kind == "efficiency"]
    else:
        assert not quality
    published = load_published()
    rows = published[published.sweep == name.removeprefix("papers/")]
    assert set(rows.preset) - {""} <= {c.model for c in cells}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PAPER_SWEEPS
                                  if set(load_sweep(n).datasets) & set(PAPER_DATASETS)])
def test_missing_dataset_says_how_to_point_at_it(name, tmp_path, cached_builds):
    offline = dataclasses.replace(_offline(load_sweep(name), tmp_path),
                                  datasets_file=str(_datasets_file(tmp_path, roots=False)))
    with pytest.raises(SweepError) as error:
        plan(offline, device="cpu")
    for dataset in load_sweep(name).datasets:  # every missing one, and how to point at it
        assert re.search(rf"dataset '{dataset}': root \S*{dataset} does not exist; set the "
                         r"dataset's `root: <folder of its \w+>` in \S*datasets.yaml",
                         str(error.value))


# ------------------------------------------------------------------ --published


def _published_csv(tmp_path: Path) -> Path:
    """Published values for the synthetic run: two tables repeat bicubic-f8's PSNR with
    a spread of 0.25 dB (the PSNR tolerance); SSIM is never repeated (no tolerance)."""
    base = dict(paper="Test paper", arxiv="0000.00000", source="test", model="m", channels="",
                dataset="Synthetic", bench_dataset="synthetic", phase="", mode="full",
                resolution="32x32", frames="5",
                unit="", ratio_to="", sweep="tiny", protocol_notes="synthetic check")
    rows = [
        dict(base, table="Table A", row="bicubic", preset="bicubic-f8", metric="psnr",
             value="20.00"),
        dict(base, table="Table B", row="bicubic", preset="bicubic-f8", metric="psnr",
             value="20.25", sweep="other"),
        dict(base, table="Table A", row="bicubic", preset="bicubic-f8", metric="ssim",
             value="0.5000"),
        dict(base, table="Table A", row="identity", preset="identity", metric="ssim",
             value="0.9990"),
        dict(base, table="Table A", row="identity", preset="identity", metric="psnr",
             value="40.00"),
        dict(base, table="Table C", row="bicubic", preset="bicubic-f8", metric="latency_s",
             phase="encode", value="0.30", ratio_to="identity", bench_dataset=""),
        dict(base, table="Table C", row="identity", preset="identity", metric="latency_s",
             phase="encode", value="0.10", ratio_to="identity", bench_dataset=""),
    ]
    path = tmp_path / "published.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    sweep = parse_sweep({
        "name": "tiny", "device": "cpu", "models": ["identity", "bicubic-f8"],
        "datasets": ["synthetic"], "resolutions": [32], "frames": [5],
        "quality": {"metrics": ["psnr", "ssim"], "max_clips": 3},
        "efficiency": {"warmup": 0, "repeats": 1},
    }, "tiny.yaml")
    return run_sweep(sweep, tmp_path_factory.mktemp("runs"), plots=False)


def _cells(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_published_columns_show_the_differences(tiny_run, tmp_path):
    results = read_results(tiny_run)
    table = build_table(results, "quality", TableOptions(ci=True))
    table = with_published(table, results, "auto", path=_published_csv(tmp_path))
    text = render(table, "md")
    cells = _cells(text)
    quality = results[results.kind == "quality"]

    def ours(model, metric):
        row = quality[(quality.model == model) & (quality.metric == metric)].iloc[0]
        return row.value, (row.ci_high - row.ci_low) / 2

    psnr, half = ours("bicubic-f8", "psnr")
    bicubic = cells["bicubic-f8"]
    assert bicubic["Paper (dB)"] == "20.00"  # Table A: the run's own sweep
    delta = bicubic["Δ (dB)"]
    assert float(delta.split()[0]) == pytest.approx(psnr - 20.0, abs=0.005)
    assert delta.endswith("(!)") == (abs(psnr - 20.0) > 0.25 + half)
    ssim, _ = ours("bicubic-f8", "ssim")
    assert float(bicubic["Δ"].split()[0]) == pytest.approx(ssim - 0.5, abs=5e-5)
    assert "(!)" not in bicubic["Δ"]  # SSIM never repeated: no tolerance, never flagged
    identity = cells["identity"]
    assert identity["PSNR (dB) ↑"] == "**∞**"
    assert identity["Paper (dB)"] == "40.00"
    assert identity["Δ (dB)"] == "+∞ (!)"  # a perfect reconstruction is infinitely above
    assert float(identity["Δ"]) == pytest.approx(1.0 - 0.999, abs=5e-5)
    notes = text.split("\n\n", 1)[1]
    assert "Published: Test paper, arXiv 0000.00000, Table A, rows bicubic; identity" in notes
    assert "largest difference between repeated reports of one checkpoint: psnr 0.25" in notes
    assert "Table B" not in notes  # another sweep's table
    latex = render(table, "latex")  # the added symbols are escaped for LaTeX too
    assert r"$\Delta$" in latex and "Δ" not in latex and "−" not in latex


def test_published_efficiency_compares_ratios(tiny_run, tmp_path):
    results = read_results(tiny_run)
    table = build_table(results, "efficiency", TableOptions())
    text = render(with_published(table, results, "tiny", path=_published_csv(tmp_path)), "md")
    cells = _cells(text)
    encode = results[(results.kind == "efficiency") & (results.phase == "encode")
                     & (results.metric == "latency_s")].set_index("model").value
    ratio = encode["bicubic-f8"] / encode["identity"]
    row = cells["bicubic-f8"]
    ours_key = next(k for k in row if k.startswith("encode · Ours ÷ identity"))
    assert float(row[ours_key]) == pytest.approx(ratio, abs=0.005)  # printed to 0.01
    paper_key = next(k for k in row if k.startswith("encode · Paper ÷ identity"))
    assert row[paper_key] == "3.00"
    delta_key = next(k for k in row if k.startswith("encode · Δ (%)"))
    assert abs(int(row[delta_key]) - (ratio / 3.0 - 1) * 100) <= 0.5 + 1e-9  # printed to 1%
    assert cells["identity"][delta_key] == "ref"
    assert "ratios to the reference model" in text


def test_table_command_published_by_run_name(tiny_run, tmp_path, capsys, monkeypatch):
    import vae_bench.report.published as module

    monkeypatch.setattr(module, "data_file", lambda: _published_csv(tmp_path))
    assert main(["table", str(tiny_run), "--layout", "quality", "--published"]) == 0
    assert "Paper (dB)" in capsys.readouterr().out
    assert main(["table", str(tiny_run), "--published", "nope"]) == 2
    assert "no published values; choose one of: tiny, other" in capsys.readouterr().err
    assert main(["table", str(tiny_run), "--published", "--resolution", "64"]) == 2
    assert "--resolution 64x64: the published values are at 32x32" in capsys.readouterr().err


def test_operating_point_is_the_papers(published):
    """WF-VAE Fig. 4's values are at 512x512 and 33 frames: the table shows that point
    unless asked for another, which is refused (Allegro's 32 frames has no preset)."""
    results = pd.DataFrame({"run": ["wf-vae-fig4"]})
    assert operating_point(published, "auto", results, None, None) == ((512, 512), 33)
    assert operating_point(published, "auto", results, (512, 512), 33) == ((512, 512), 33)
    with pytest.raises(PublishedError, match="--frames 17: the published values are at 33"):
        operating_point(published, "auto", results, None, 17)
    encode81 = operating_point(published, "open-sora-plan-v1.2-encode-81f", results, None, None)
    assert encode81 == ((256, 256), 81)


def test_shipped_values_beside_a_synthetic_run_relabelled(tiny_run):
    """The shipped WF-VAE Table 5 rows against a synthetic run relabelled as that sweep:
    rows match by preset and mode (block-wise = any chunked mode), columns by dataset."""
    results = read_results(tiny_run)
    results = results[(results.kind == "quality") & (results.model == "bicubic-f8")]
    full = results.assign(model="wf-vae-l-16ch", dataset="panda70m-val", run="wf-vae-table5")
    chunked = full.assign(mode="temporal_chunks(16)", cell=full.cell + "-c")
    both = pd.concat([full, chunked], ignore_index=True)
    table = build_table(both, "quality", TableOptions(ci=False))
    text = render(with_published(table, both), "md")
    cells = _cells(text)
    psnr = float(full[full.metric == "psnr"].value.iloc[0])
    for label in ("wf-vae-l-16ch (full)", "wf-vae-l-16ch (temporal_chunks(16))"):
        assert cells[label]["Paper (dB)"] == "35.87"
        delta = cells[label]["Δ (dB)"]
        assert float(delta.split()[0]) == pytest.approx(psnr - 35.87, abs=0.005)
        assert delta.endswith("(!)")  # a bicubic floor is far below the paper
    assert "WF-VAE (CVPR 2025), arXiv 2411.17459, Table 5" in text
    assert "rows WF-VAE-L (Ours), Chn 16, BWI no; WF-VAE-L (Ours), Chn 16, BWI yes" in text


def test_new_papers_tables_beside_a_synthetic_run_relabelled(tiny_run):
    """OD-VAE Table 4 (direct vs temporal tiling) and LiteVAE Table 3 (encoder cost as
    ratios) against a synthetic run relabelled as those sweeps: the tiled mode takes the
    paper's tiled row, and the suite's frames/s compares with the paper's img/s."""
    results = read_results(tiny_run)
    quality = results[(results.kind == "quality") & (results.model == "bicubic-f8")]
    full = quality.assign(model="od-vae-4ch", dataset="webvid-val", run="od-vae-table4")
    tiled = full.assign(mode="temporal_chunks(33)", cell=full.cell + "-t")
    both = pd.concat([full, tiled], ignore_index=True)
    text = render(with_published(build_table(both, "quality", TableOptions(ci=False)), both),
                  "md")
    cells = _cells(text)
    psnr = float(full[full.metric == "psnr"].value.iloc[0])
    for label, paper in (("od-vae-4ch (full)", 31.05), ("od-vae-4ch (temporal_chunks(33))",
                                                        30.98)):
        assert cells[label]["Paper (dB)"] == f"{paper:.2f}"
        assert float(cells[label]["Δ (dB)"].split()[0]) == pytest.approx(psnr - paper,
                                                                           abs=0.005)
    assert "OD-VAE, arXiv 2409.01199, Table 4" in text

    efficiency = results[results.kind == "efficiency"]
    names = {"identity": "sd-vae-ft-mse", "bicubic-f8": "lite-vae-b"}
    relabelled = efficiency.assign(model=efficiency.model.map(names), run="litevae-table3")
    text = render(with_published(build_table(relabelled, "efficiency", TableOptions()),
                                 relabelled), "md")
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    row = next([c.strip() for c in line.strip("|").split("|")] for line in lines[2:]
               if "lite-vae-b" in line)
    encode = relabelled[(relabelled.phase == "encode")
                        & (relabelled.metric == "frames_per_s")].set_index("model").value
    at = header.index("encode · Throughput (frames/s) ↑")  # then ours, paper, Δ as ratios
    assert header[at + 1] == "encode · Ours ÷ sd-vae-ft-mse"
    assert float(row[at + 1]) == pytest.approx(encode["lite-vae-b"] / encode["sd-vae-ft-mse"],
                                               abs=0.005)
    assert row[at + 2] == f"{129 / 68:.2f}"  # the paper's img/s, Table 3
    memory = next(i for i, h in enumerate(header) if h.startswith("encode · Memory"))
    assert row[memory + 2] == f"{3155 / 8860:.2f}"
    assert "LiteVAE (NeurIPS 2024), arXiv 2405.14477, Table 3, rows LiteVAE-B; VAE" in text
