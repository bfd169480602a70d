"""Fetching: the real huggingface_hub client and the plain-URL downloader against a server on
127.0.0.1 (tests/loopback.py), with releases the tests write in their official layouts.

Covers: fetch + strict load, a cache hit with no request, offline mode, 404, gated, a
connection cut mid-file (no corrupt cache; the rerun completes), a wrong hash (the file is
removed), two processes fetching one file, the sweep policies and run.json's record.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from pathlib import Path

import pytest
import torch

from tests.loopback import Loopback
from vae_bench import distributed
from vae_bench.adapters import Preset
from vae_bench.adapters.base import AdapterError, file_sha256
from vae_bench.adapters.source import DIFFUSERS_FILES, HUB, URL, Source
from vae_bench.fetch import FetchError, fetch_source, resolve_weights
from vae_bench.fetch.catalog import MetricNetwork
from vae_bench.fetch.download import download_url

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def server(monkeypatch):
    """The loopback server; the process is online (tests/conftest.py sets HF_HUB_OFFLINE)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = Loopback()
    yield hub
    hub.close()


@pytest.fixture
def online(server, tmp_path, monkeypatch):
    """huggingface_hub pointed at the loopback server, with an empty cache, online."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return server


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- sources ------------------------------------------------------------------------
def test_source_parsing():
    source = Source.parse("hf://org/repo/vae@v1.2")
    assert (source.kind, source.location, source.subfolder, source.revision) == (
        HUB, "org/repo", "vae", "v1.2",
    )  # fmt: skip
    assert str(source) == "hf://org/repo/vae@v1.2"
    assert Source.parse("hf://spaces/org/app/a/b").repo_type == "space"
    assert Source.parse("hf://org/repo").revision == "main"
    url = Source.parse("https://example.org/x/i3d.pt?dl=1")
    assert (url.kind, url.files) == (URL, ("i3d.pt",))
    for bad in ("hf://org", "hf://org/repo@", "hf://org/../x", "s3://bucket/x", "https://a.org/"):
        with pytest.raises(AdapterError):
            Source.parse(bad)


def test_every_release_names_a_source():
    from vae_bench.adapters import presets

    for name in ("wf-vae-l-16ch", "wf-vae-s-8ch", "od-vae-4ch", "iv-vae-z16-dim96",
                 "lite-vae-b", "sd-vae-ft-mse", "cogvideox-2b-vae"):  # fmt: skip
        source = presets()[name].source
        assert source is not None and source.location, name
        assert presets()[name].release.startswith("https://"), name
    assert presets()["identity"].source is None


# --- the plain-URL downloader -----------------------------------------------------------
def test_url_fetch_verify_cache_hit_and_offline(server, tmp_path):
    data = bytes(range(256)) * 4000
    server.plain["net-1234abcd.pth"] = data
    url = f"{server.url}/files/net-1234abcd.pth"
    record, fetched = download_url(url, tmp_path / "net.pth", sha256=_sha(data)[:8])
    assert fetched and record.sha256 == _sha(data) and (tmp_path / "net.pth").read_bytes() == data
    before = len(server.requests)
    record, fetched = download_url(url, tmp_path / "net.pth", sha256=_sha(data))
    assert not fetched and len(server.requests) == before  # cache hit: no request
    with pytest.raises(FetchError, match="offline mode is on.*run `vae-bench fetch x`"):
        download_url(url, tmp_path / "other.pth", offline=True, hint="vae-bench fetch x")
    assert len(server.requests) == before


def test_url_404_and_no_server(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        download_url(f"{server.url}/files/absent.pt", tmp_path / "absent.pt")
    assert not (tmp_path / "absent.pt").exists()
    with pytest.raises(FetchError, match="cannot connect"):
        download_url("http://127.0.0.1:9/x.pt", tmp_path / "x.pt")


def test_url_cut_mid_file_keeps_nothing_in_place_and_resumes(server, tmp_path):
    data = bytes(range(256)) * 2000
    server.plain["big.pt"] = data
    server.faults.drop["big.pt"], server.faults.cut = 1, 100_000
    dest = tmp_path / "big.pt"
    with pytest.raises(FetchError, match="connection lost after 100000 of 512000 bytes"):
        download_url(f"{server.url}/files/big.pt", dest, sha256=_sha(data), attempts=1)
    assert not dest.exists() and dest.with_name("big.pt.part").stat().st_size == 100_000
    record, _ = download_url(f"{server.url}/files/big.pt", dest, sha256=_sha(data))
    assert dest.read_bytes() == data and record.sha256 == _sha(data)
    assert server.requests[-1][2] == "bytes=100000-"  # the rerun continued the part
    assert not dest.with_name("big.pt.part").exists()


def test_url_resume_refused_by_the_server_starts_over(server, tmp_path):
    data = bytes(range(256)) * 500
    server.plain["net.pt"] = data
    server.faults.no_range.add("net.pt")
    dest = tmp_path / "net.pt"
    dest.with_name("net.pt.part").write_bytes(b"stale bytes of another file")
    record, _ = download_url(f"{server.url}/files/net.pt", dest, sha256=_sha(data))
    assert dest.read_bytes() == data and record.sha256 == _sha(data)
    assert server.requests[-1][2] == "bytes=27-"  # asked to resume, got the whole file


def test_url_cut_is_retried_within_one_call(server, tmp_path):
    data = bytes(range(256)) * 2000
    server.plain["big.pt"] = data
    server.faults.drop["big.pt"], server.faults.cut = 2, 70_000
    record, _ = download_url(f"{server.url}/files/big.pt", tmp_path / "big.pt")
    assert record.sha256 == _sha(data) and server.count("/files/big.pt") == 3


def test_url_wrong_hash_removes_the_file(server, tmp_path):
    server.plain["net.pt"] = b"x" * 1000
    dest = tmp_path / "net.pt"
    with pytest.raises(FetchError, match="sha256 .*expected 0000.*removed"):
        download_url(f"{server.url}/files/net.pt", dest, sha256="0000abcd")
    assert not dest.exists() and not dest.with_name("net.pt.part").exists()
    with pytest.raises(FetchError, match="size 1000 bytes, expected 999"):
        download_url(f"{server.url}/files/net.pt", dest, size=999)


def _fetch_in_child(url: str, dest: str, queue) -> None:
    try:
        record, fetched = download_url(url, dest)
        queue.put((record.sha256, fetched))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        queue.put(("error", str(error)))


def test_two_processes_fetching_one_file_end_with_one_good_file(server, tmp_path):
    data = bytes(range(256)) * 1200
    server.plain["shared.pt"] = data
    server.faults.slow = 0.05  # the first holds the lock while the second arrives
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    url, dest = f"{server.url}/files/shared.pt", str(tmp_path / "shared.pt")
    children = [context.Process(target=_fetch_in_child, args=(url, dest, queue)) for _ in "ab"]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    results = sorted(queue.get(timeout=5) for _ in children)
    assert [r[0] for r in results] == [_sha(data)] * 2
    assert sorted(r[1] for r in results) == [False, True]  # one fetched, one found it
    assert Path(dest).read_bytes() == data and server.count("/files/shared.pt", "GET") == 1
    assert not Path(dest + ".part").exists()


def _hub_fetch_in_child(source: Source, queue) -> None:
    try:
        fetched = fetch_source(source)
        queue.put((fetched.files[0].sha256, str(fetched.path)))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        queue.put(("error", str(error)))


def test_two_processes_fetching_one_hub_file(online):
    data = bytes(range(256)) * 1200
    online.add_repo("lab/shared", {"w.safetensors": data})
    online.faults.slow = 0.05
    source = Source(HUB, "lab/shared", files=("w.safetensors",))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_hub_fetch_in_child, args=(source, queue)) for _ in "ab"]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    results = [queue.get(timeout=5) for _ in children]
    assert [r[0] for r in results] == [_sha(data)] * 2 and results[0][1] == results[1][1]
    assert Path(results[0][1]).read_bytes() == data
    assert online.count("/resolve/", "GET") == 1  # huggingface_hub's lock: one download


# --- the hub through huggingface_hub ----------------------------------------------------
def _wf_release() -> tuple[Preset, dict[str, bytes]]:
    """A tiny WF-VAE saved as the release is (config.json + diffusers safetensors)."""
    from tests.test_wf_vae import tiny_preset

    base = tiny_preset("wf-vae-l-16ch")
    vae = base.create()
    files = {}
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        vae.module.save_pretrained(folder)
        for name in DIFFUSERS_FILES:
            files[name] = (Path(folder) / name).read_bytes()
    source = Source(HUB, "lab/wf-vae-tiny", files=DIFFUSERS_FILES)
    return Preset("wf-vae-tiny", base.adapter, config=base.config, source=source), files


def test_hub_fetch_strict_load_cache_hit_and_offline(online, monkeypatch):
    preset, files = _wf_release()
    commit = online.add_repo("lab/wf-vae-tiny", {**files, "README.md": b"readme"})
    fetched = resolve_weights(preset, "official")
    assert fetched is not None and fetched.fetched and fetched.commit == commit
    assert sorted(f.name for f in fetched.files) == sorted(DIFFUSERS_FILES)  # not README
    weights = fetched.path / "diffusion_pytorch_model.safetensors"
    assert weights.read_bytes() == files["diffusion_pytorch_model.safetensors"]
    vae = preset.create(fetched.path)  # the adapter's strict loader, unchanged
    assert vae.weights == file_sha256(weights) == _sha(files["diffusion_pytorch_model.safetensors"])
    record = fetched.record()
    assert (record["repo"], record["commit"], record["revision"]) == ("lab/wf-vae-tiny", commit,
                                                                      "main")  # fmt: skip
    assert {f["name"]: f["sha256"] for f in record["files"]}["config.json"] == _sha(
        files["config.json"]
    )

    before = len(online.requests)
    again = resolve_weights(preset, "official")
    assert not again.fetched and again.path == fetched.path
    assert len(online.requests) == before  # cache hit: no request at all
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights(preset, "official").path == fetched.path  # offline, from the cache
    other = Source(HUB, "lab/never-fetched", files=("x.safetensors",))
    with pytest.raises(FetchError, match="not in the huggingface_hub cache and offline.*run `h`"):
        fetch_source(other, hint="h")
    assert len(online.requests) == before


def test_hub_subfolder_and_revision_from_a_weights_url(online):
    preset, files = _wf_release()
    nested = {f"vae/{name}": data for name, data in files.items()}
    online.add_repo("lab/pipeline", nested | {"unet/x.bin": b"u"})
    fetched = resolve_weights(preset, "hf://lab/pipeline/vae@main")
    assert fetched.path.name == "vae" and not any("unet" in str(f.path) for f in fetched.files)
    assert preset.create(fetched.path).weights == _sha(files["diffusion_pytorch_model.safetensors"])
    assert online.count("/unet/") == 0


def test_hub_errors_are_one_line(online):
    with pytest.raises(FetchError, match="hf://lab/absent: no such repository"):
        fetch_source(Source(HUB, "lab/absent"))
    online.add_repo("lab/gated", {"w.safetensors": b"w"}, gated=True)
    with pytest.raises(FetchError, match="is gated: accept its terms.*hf auth login"):
        fetch_source(Source(HUB, "lab/gated"))
    online.add_repo("lab/thin", {"config.json": b"{}"})
    with pytest.raises(FetchError, match="no file matching 'model.safetensors'"):
        fetch_source(Source(HUB, "lab/thin", files=("config.json", "model.safetensors")))
    for error in (FetchError,):
        with pytest.raises(error, match="no official release"):
            resolve_weights(Preset("bare", Preset, config={}), "official")


def test_hub_cut_mid_file_leaves_no_corrupt_cache_and_rerun_completes(online, monkeypatch):
    import huggingface_hub.file_download as file_download

    data = bytes(range(256)) * 3000
    online.add_repo("lab/cut", {"w.safetensors": data})
    source = Source(HUB, "lab/cut", files=("w.safetensors",))
    # cut before any byte every time: the client's retries end, the call fails
    online.faults.drop["w.safetensors"], online.faults.cut = 10, 0
    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)
    with pytest.raises(FetchError, match="interrupted|cannot reach"):
        fetch_source(source)
    cache = Path(file_download.constants.HF_HUB_CACHE)
    assert not [p for p in cache.rglob("w.safetensors") if p.exists()]  # nothing in place
    online.faults.drop["w.safetensors"] = 1
    online.faults.cut = 200_000  # this time the client resumes the part after the cut
    monkeypatch.setattr(file_download.constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)  # not 10 MiB
    fetched = fetch_source(source)
    assert fetched.path.read_bytes() == data and fetched.files[0].sha256 == _sha(data)
    assert online.requests[-1][2] == f"bytes={3 << 16}-"  # the whole blocks before the cut


def test_hub_wrong_hash_removes_the_file(online):
    import huggingface_hub.file_download as file_download

    data = b"weights" * 1000
    online.add_repo("lab/bad", {"w.safetensors": data})
    online.faults.corrupt.add("w.safetensors")
    with pytest.raises(FetchError, match="sha256 .* expected .*removed"):
        fetch_source(Source(HUB, "lab/bad", files=("w.safetensors",)))
    cache = Path(file_download.constants.HF_HUB_CACHE)
    assert not [p for p in cache.rglob("*") if p.is_file() and p.read_bytes()[:7] != b"weights"
                and p.stat().st_size == len(data)]  # fmt: skip
    online.faults.corrupt.clear()
    assert fetch_source(Source(HUB, "lab/bad", files=("w.safetensors",))).path.read_bytes() == data


# --- URL model weights, metric networks, sweeps -------------------------------------------
def test_url_weights_load_strictly(server, tmp_path):
    from tests.test_iv_vae import tiny_preset
    from vae_bench.adapters.iv_vae import save_state_dict

    base = tiny_preset()
    file = save_state_dict(base.create().module, tmp_path / "ivvae_z4_dim4.pth")
    server.plain["ivvae_z4_dim4.pth"] = file.read_bytes()
    url = f"{server.url}/files/ivvae_z4_dim4.pth"
    fetched = resolve_weights(base, url)
    assert fetched.path.name == "ivvae_z4_dim4.pth"
    assert base.create(fetched.path).weights == file_sha256(file)
    assert resolve_weights(base, url).fetched is False


def _loopback_network(server, name: str, data: bytes, folder: Path) -> MetricNetwork:
    server.plain[name] = data
    source = Source(URL, f"{server.url}/files/{name}", files=(name,), revision="")
    return MetricNetwork(name, "test network", lambda: source, lambda: folder)


def test_fvd_missing_fetch_policy(server, tmp_path, monkeypatch):
    from vae_bench import runner
    from vae_bench.fvd import cache_dir
    from vae_bench.fvd.extractors import random_i3d
    from vae_bench.sweep import parse_sweep

    buffer = io.BytesIO()
    torch.save(random_i3d(3).state_dict(), buffer)
    network = _loopback_network(server, "i3d_pretrained_400.pt", buffer.getvalue(), cache_dir())
    monkeypatch.setattr(runner, "fvd_network", lambda name: network)
    sweep = parse_sweep({"name": "t", "models": ["identity"], "quality": {
        "metrics": ["rfvd"], "fvd_extractor": "videogpt-i3d", "fvd_missing": "fetch"}})  # fmt: skip
    assert runner._fvd_check(sweep).weights is None  # fetched into the cache, then built
    assert (cache_dir() / "i3d_pretrained_400.pt").read_bytes() == buffer.getvalue()

    (cache_dir() / "i3d_pretrained_400.pt").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(runner.SweepError, match="offline mode is on.*vae-bench fetch"):
        runner._fvd_check(sweep)
    fallback = parse_sweep({"name": "t", "models": ["identity"], "quality": {
        "metrics": ["rfvd"], "fvd_extractor": "videogpt-i3d",
        "fvd_missing": "fetch-or-random"}})  # fmt: skip
    plan = runner._fvd_check(fallback)
    assert plan.weights == "random" and "vae-bench fetch" in plan.note


def test_lpips_missing_fetch_offline_names_the_command(monkeypatch, tmp_path):
    from vae_bench import runner
    from vae_bench.sweep import parse_sweep

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no backbone there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def sweep(policy: str):
        quality = {"metrics": ["lpips"], "lpips_missing": policy}
        return parse_sweep({"name": "t", "models": ["identity"], "quality": quality})

    with pytest.raises(runner.SweepError, match="run `vae-bench fetch lpips-alex`"):
        runner._lpips_check(sweep("fetch"), torch.device("cpu"))
    assert "vae-bench fetch lpips-alex" in runner._lpips_check(sweep("fetch-or-skip"), "cpu")
    with pytest.raises(runner.SweepError, match="lpips_missing: 'maybe'|allowed"):
        sweep("maybe")


def test_official_weights_in_a_sweep_are_fetched_and_recorded(online, tmp_path):
    from vae_bench.adapters import register
    from vae_bench.runner import run_sweep
    from vae_bench.sweep import parse_sweep

    preset, files = _wf_release()
    register(preset, replace=True)
    commit = online.add_repo("lab/wf-vae-tiny", files)
    sweep = parse_sweep({
        "name": "fetched", "models": [{"preset": "wf-vae-tiny", "weights": "official",
                                       "efficiency": False}],
        "resolutions": [32], "frames": [5], "quality": {"metrics": ["psnr"], "max_clips": 1},
    })  # fmt: skip
    root = run_sweep(sweep, tmp_path / "reports", plots=False)
    meta = json.loads((root / "run.json").read_text())
    [entry] = meta["fetched_weights"]
    assert (entry["model"], entry["weights"]) == ("wf-vae-tiny", "official")
    assert entry["commit"] == commit and entry["repo"] == "lab/wf-vae-tiny"
    import pandas as pd

    results = pd.read_csv(root / "results.csv")
    assert set(results.weights) == {_sha(files["diffusion_pytorch_model.safetensors"])}


def test_the_first_process_fetches_and_the_others_wait(monkeypatch):
    from vae_bench import runner

    calls = []
    monkeypatch.setattr(distributed, "gather", lambda value: calls.append("wait") or [value])
    for local_rank, expected in ((0, ["fetch", "wait"]), (1, ["wait", "fetch"])):
        calls.clear()
        context = distributed.Context(rank=local_rank, world_size=2, local_rank=local_rank)
        monkeypatch.setattr(distributed, "context", lambda context=context: context)
        assert runner._first_fetches(lambda: calls.append("fetch") or 7) == 7
        assert calls == expected


# --- the command line ---------------------------------------------------------------
def test_cli_list_unknown_name_and_url_fetch(server, tmp_path, capsys):
    from vae_bench.cli import main

    assert main(["fetch", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("wf-vae-l-16ch", "od-vae-4ch", "iv-vae-z16-dim96", "lpips-alex", "styleganv-i3d",
                 "videogpt-i3d", "hf://chestnutlzj/WF-VAE-L-16Chn",
                 "sha256 7be5be79"):  # fmt: skip
        assert name in listing
    assert main(["fetch", "wf-vae-l-16c"]) == 2
    assert "did you mean wf-vae-l-16ch" in capsys.readouterr().err
    server.plain["model.safetensors"] = b"abc" * 100
    url = f"{server.url}/files/model.safetensors"
    assert main(["fetch", url]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {_sha(b'abc' * 100)}" in out and "fetched" in out
    assert main(["fetch", "--offline", url]) == 0 and "cached" in capsys.readouterr().out
