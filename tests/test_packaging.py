"""The installed package is one namespace, ``vae_bench``, and carries its shipped files."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vae_bench import sweeps
from vae_bench.sweep import SweepError, load_sweep, resolve_sweep

ROOT = Path(__file__).resolve().parent.parent
OLD_NAMES = ("bench", "adapters", "benchmarks")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel pip builds from this checkout (offline: the venv's own setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (path,) = out.glob("vae_bench-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_only_the_vae_bench_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"vae_bench", wheel.name.split("-py3")[0] + ".dist-info"}
    for expected in (
        "vae_bench/cli.py",
        "vae_bench/adapters/base.py",
        "vae_bench/adapters/wf_vae/model.py",
        "vae_bench/metrics/ssim.py",
        "vae_bench/sweeps/default.yaml",
        "vae_bench/sweeps/datasets.yaml",
        "vae_bench/py.typed",
        "vae_bench/report/published.csv",
        "vae_bench/sweeps/papers/wf-vae-table1.yaml",
        "vae_bench/metric_info.py",
        "vae_bench/report/gates.yaml",  # the gate's built-in rules
    ):
        assert expected in names
    # the packaged datasets file is the repository's, not a stale copy
    archive = zipfile.ZipFile(wheel)
    assert archive.read("vae_bench/sweeps/datasets.yaml") == (ROOT / "datasets.yaml").read_bytes()
    for path in (ROOT / "sweeps").rglob("*.yaml"):
        name = path.relative_to(ROOT / "sweeps").as_posix()
        assert archive.read(f"vae_bench/sweeps/{name}") == path.read_bytes()
    entry_points = configparser.ConfigParser()
    dist_info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    entry_points.read_string(archive.read(dist_info).decode())
    assert entry_points["console_scripts"]["vae-bench"] == "vae_bench.cli:main"
    assert entry_points["vae_bench.adapters"]["builtin"] == "vae_bench.adapters:register_builtin"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_the_old_top_level_names():
    sources = [p for d in ("bench", "adapters", "sweeps", "tests", "benchmarks")
               for p in (ROOT / d).rglob("*.py")]  # fmt: skip
    offenders = {str(p.relative_to(ROOT)) for p in sources if _imports(p) & set(OLD_NAMES)}
    assert not offenders


def test_a_shipped_sweep_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_sweep("default") == sweeps.directory() / "default.yaml"
    assert resolve_sweep("default.yaml") == sweeps.directory() / "default.yaml"
    assert load_sweep("default").name == "default"
    assert "datasets" not in sweeps.shipped()
    assert set(sweeps.shipped()) >= {p.stem for p in (ROOT / "sweeps").glob("*.yaml")} - {
        "datasets"
    }
    with pytest.raises(SweepError, match="did you mean default"):
        resolve_sweep("defualt")


def test_a_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_text("name: mine\nmodels: [identity]\ndatasets: [synthetic]\n")
    assert resolve_sweep("default") == Path("default")


def test_the_shipped_datasets_file_is_the_fallback(tmp_path, monkeypatch):
    from vae_bench.data import load_datasets

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VAE_BENCH_DATASETS", raising=False)
    assert sweeps.datasets_file().read_bytes() == (ROOT / "datasets.yaml").read_bytes()
    assert "synthetic" in load_datasets()


def test_list_sweeps(capsys):
    from vae_bench.cli import main

    assert main(["list", "--sweeps"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "wf-vae-memory" in out


def test_list_groups_presets_by_family_with_their_weights(capsys):
    from vae_bench.adapters import presets
    from vae_bench.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    groups: dict[str, list[str]] = {}
    lines = out.split("\ndatasets:")[0].splitlines()[1:]
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith("  ") and not line.startswith("   "):
            family = line.strip()
        elif line.startswith("    ") and line.strip() and not line.strip().startswith("official"):
            name = line.split()[0]
            groups.setdefault(family, []).append(name)
            assert following.strip().startswith("official weights: "), line
    assert sorted(n for names in groups.values() for n in names) == sorted(presets())
    assert {"wf-vae-l-16ch", "wf-vae-l-4ch"} <= set(groups["wf-vae"])
    assert {"identity"} == set(groups["identity"])
    weights = dict(zip(lines[::1], lines[1::1], strict=False))
    entry = next(line for line in lines if line.split()[:1] == ["wf-vae-l-4ch"])
    assert "none released" in weights[entry]
    entry = next(line for line in lines if line.split()[:1] == ["wf-vae-l-16ch"])
    assert "huggingface.co/chestnutlzj/WF-VAE-L-16Chn" in weights[entry]
    entry = next(line for line in lines if line.split()[:1] == ["identity"] and "latent" in line)
    assert "none needed" in weights[entry]


def test_readme_model_table_is_the_registry_s():
    """The README's table of every preset is what `vae-bench list --markdown` prints."""
    from vae_bench.adapters import builtin_presets
    from vae_bench.adapters.model_table import HEADER, markdown_table

    readme = (ROOT / "README.md").read_text().splitlines()
    start = readme.index(HEADER)
    end = readme.index("", start)
    assert "\n".join(readme[start:end]) == markdown_table(builtin_presets())
