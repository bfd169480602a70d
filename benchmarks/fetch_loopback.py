"""Loopback timing of fetching: a large file served on 127.0.0.1 (tests/loopback.py, in a
separate process), fetched by the plain-URL downloader and by huggingface_hub, against a
plain ``cp`` of the same file; then a download cut at half and resumed. Speed only
(nothing asserted).

    python benchmarks/fetch_loopback.py [--mb 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.loopback

from tests.loopback import Loopback  # noqa: E402
from vae_bench.adapters.source import HUB, Source  # noqa: E402
from vae_bench.fetch import FetchError, fetch_source  # noqa: E402
from vae_bench.fetch.download import download_url, sha256_of  # noqa: E402


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def serve(data: bytes, cut: int, ready) -> None:
    """A server process: the file as a plain URL and as a hub repo; the first GET of the
    plain file is cut after ``cut`` bytes when ``cut`` is set."""
    server = Loopback()
    server.plain["big.bin"] = data
    server.add_repo("bench/big", {"big.safetensors": data})
    if cut:
        server.faults.drop["big.bin"], server.faults.cut = 1, cut
    ready.put(server.url)
    time.sleep(3600)


def start_server(data: bytes, cut: int = 0) -> tuple[str, multiprocessing.Process]:
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    process = context.Process(target=serve, args=(data, cut, ready), daemon=True)
    process.start()
    return ready.get(timeout=60), process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mb << 20)
    digest = hashlib.sha256(data).hexdigest()
    server_url, server = start_server(data)
    url = f"{server_url}/files/big.bin"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = root / "source.bin"
        source.write_bytes(data)
        runs: dict[str, list[float]] = {"cp": [], "sha256 only": [], "download_url": [],
                                        "huggingface_hub": []}  # fmt: skip
        for index in range(args.repeats):
            target = root / f"cp-{index}.bin"
            runs["cp"].append(timed(lambda t=target: subprocess.run(["cp", source, t], check=True)))
            runs["sha256 only"].append(timed(lambda: sha256_of(source)))
            dest = root / f"url-{index}" / "big.bin"
            runs["download_url"].append(timed(lambda d=dest: download_url(url, d, sha256=digest)))
            os.environ["HF_HUB_CACHE"] = str(root / f"hf-{index}")
            os.environ["HF_ENDPOINT"] = server_url
            os.environ.pop("HF_HUB_OFFLINE", None)
            from huggingface_hub import constants

            constants.HF_HUB_CACHE = os.environ["HF_HUB_CACHE"]
            hub = Source(HUB, "bench/big", files=("big.safetensors",))
            runs["huggingface_hub"].append(timed(lambda h=hub: fetch_source(h)))
            for path in (target, dest.parent, root / f"hf-{index}"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
        print(f"{args.mb} MiB over loopback, median of {args.repeats} (s; MiB/s):")
        for name, values in runs.items():
            median = statistics.median(values)
            print(f"  {name:16s} {median:7.3f} s  {args.mb / median:8.1f} MiB/s")

        cut_url, cut_server = start_server(data, cut=len(data) // 2)
        url = f"{cut_url}/files/big.bin"
        dest = root / "cut" / "big.bin"
        start = time.perf_counter()
        try:
            download_url(url, dest, sha256=digest, attempts=1)
        except FetchError as error:
            cut_s = time.perf_counter() - start
            print(f"cut at half: {error}")
        part = dest.with_name("big.bin.part")
        kept = part.stat().st_size
        resume_s = timed(lambda: download_url(url, dest, sha256=digest))
        print(
            f"cut after {cut_s:.3f} s with {kept} bytes in {part.name}; resumed (Range from "
            f"byte {kept}) in {resume_s:.3f} s; sha256 ok: {sha256_of(dest) == digest}"
        )
    for process in (server, cut_server):
        process.terminate()


if __name__ == "__main__":
    main()
