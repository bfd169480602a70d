"""What can be fetched: each preset's official release and the metric networks.

Model weights (``weights: official``, ``hf://...``, ``https://...``) resolve to a local
path the adapter loads as before; metric networks go where their loaders look (the LPIPS
backbone into torchvision's cache, the I3D files into ``$VAE_BENCH_CACHE/fvd``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vae_bench.adapters.base import Preset
from vae_bench.adapters.source import HUB, URL, Source
from vae_bench.fetch.download import FetchError, FileRecord, download_url
from vae_bench.fetch.hub import fetch_hub, patterns

OFFICIAL = "official"
FETCH_COMMAND = "vae-bench fetch"
_TORCH_HUB_HASH = re.compile(r"-([0-9a-f]{8,})\.")  # torch.hub's file-name hash prefix


def offline_mode(flag: bool = False) -> bool:
    """``--offline``, or HF_HUB_OFFLINE (read now, so a test or a wrapper can set it)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Fetched:
    """Local files of a source, and what ``run.json`` records about them."""

    source: Source
    path: Path  # the one file, or the folder holding several
    files: tuple[FileRecord, ...]
    commit: str = ""  # the hub commit the files came from
    fetched: bool = False  # False: all from the cache

    def record(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "kind": self.source.kind,
            "repo": self.source.location,
            "repo_type": self.source.repo_type if self.source.kind == HUB else "",
            "subfolder": self.source.subfolder,
            "revision": self.source.revision,
            "commit": self.commit,
            "path": str(self.path),
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


def url_cache_dir() -> Path:
    """Model files from plain URLs: ``$VAE_BENCH_CACHE/weights`` (a folder per URL)."""
    from vae_bench.fvd.cache import cache_root

    return cache_root() / "weights"


def fetch_source(
    source: Source, *, offline: bool = False, destination: Path | None = None, hint: str = ""
) -> Fetched:
    """The source's files, downloaded on first use (never when offline)."""
    offline = offline_mode(offline)
    if source.kind == HUB:
        got = fetch_hub(source, offline=offline, hint=hint)
        single = len(got.files) == 1 and not source.subfolder and source.files
        path = got.files[0].path if single else got.folder
        return Fetched(source, path, got.files, got.commit, got.fetched)
    if destination is None:
        key = hashlib.sha256(source.location.encode()).hexdigest()[:16]
        host = urlsplit(source.location).hostname or "url"
        destination = url_cache_dir() / f"{host}-{key}"
    record, fetched = download_url(
        source.location, destination / source.files[0], sha256=source.sha256,
        size=source.size, offline=offline, hint=hint,
    )  # fmt: skip
    return Fetched(source, record.path, (record,), fetched=fetched)


def preset_source(preset: Preset) -> Source:
    if preset.source is None:
        raise FetchError(
            f"{preset.name} has no official release to fetch ({preset.description}); use "
            "weights: random, a local path, or hf://org/repo[/subfolder][@revision]"
        )
    return preset.source


def weights_source(preset: Preset, weights: str) -> Source | None:
    """The source a sweep's ``weights`` names, or None for a local path or ``random``."""
    if weights == OFFICIAL:
        return preset_source(preset)
    if Source.is_remote(weights):
        try:
            return Source.parse(weights)
        except ValueError as error:
            raise FetchError(str(error)) from None
    return None


def resolve_weights(preset: Preset, weights: str, *, offline: bool = False) -> Fetched | None:
    """Fetch what ``weights`` names (None when it is a local path or ``random``)."""
    source = weights_source(preset, weights)
    if source is None:
        return None
    hint = f"{FETCH_COMMAND} {preset.name}" if weights == OFFICIAL else f"{FETCH_COMMAND} {weights}"
    return fetch_source(source, offline=offline, hint=hint)


# --- metric networks ----------------------------------------------------------------
@dataclass(frozen=True)
class MetricNetwork:
    """A metric's pretrained network file and the folder its loader reads it from."""

    name: str
    description: str
    source: Callable[[], Source] = field(repr=False)
    folder: Callable[[], Path] = field(repr=False)

    @property
    def path(self) -> Path:
        return self.folder() / self.source().files[0]

    def fetch(self, *, offline: bool = False) -> Fetched:
        return fetch_source(
            self.source(), offline=offline, destination=self.folder(),
            hint=f"{FETCH_COMMAND} {self.name}",
        )  # fmt: skip


def _lpips_source(net: str) -> Callable[[], Source]:
    def source() -> Source:
        from vae_bench.metrics.lpips import backbone_weights_url

        url = backbone_weights_url(net)
        name = url.rsplit("/", 1)[-1]
        prefix = _TORCH_HUB_HASH.search(name)
        return Source(
            URL, url, files=(name,), revision="", sha256=prefix.group(1) if prefix else "",
            note="sha256 prefix from the file name (torch.hub's convention)",
        )  # fmt: skip

    return source


def _torch_hub_folder() -> Path:
    from vae_bench.metrics.lpips import backbone_weights_path

    return backbone_weights_path("alex").parent


def _fid_source() -> Source:
    from vae_bench.metrics.rfid import WEIGHTS_FILE, WEIGHTS_URL

    return Source(
        URL, WEIGHTS_URL, files=(WEIGHTS_FILE,), revision="",
        note="torch-fidelity's release asset; no sha256 published (the fetched one is recorded)",
    )  # fmt: skip


def _fid_folder() -> Path:
    from vae_bench.metrics.rfid import weights_candidates

    return weights_candidates()[0].parent


def _fvd_folder() -> Path:
    from vae_bench.fvd.cache import cache_dir

    return cache_dir()


STYLEGANV_I3D = Source(
    URL, "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
    files=("i3d_torchscript.pt",), revision="",
    note="the URL StyleGAN-V's FVD code loads; no sha256 published",
)  # fmt: skip
# VideoGPT's own link is a Google Drive id; the same file is committed in the Open-Sora
# Plan v1.0.0 space (its eval/fvd/videogpt folder), served from a pinned commit.
VIDEOGPT_I3D = Source(
    URL,
    "https://huggingface.co/spaces/LanguageBind/Open-Sora-Plan-v1.0.0/resolve/"
    "810fa8c4bdb3a4c8eec9bd57375c29bde6fb46de/opensora/eval/fvd/videogpt/i3d_pretrained_400.pt",
    files=("i3d_pretrained_400.pt",), revision="",
    note="VideoGPT's file as committed in the Open-Sora Plan v1.0.0 space; no sha256 published",
)  # fmt: skip

METRIC_NETWORKS: dict[str, MetricNetwork] = {
    net.name: net
    for net in (
        MetricNetwork("lpips-alex", "LPIPS AlexNet backbone (torchvision ImageNet weights)",
                      _lpips_source("alex"), _torch_hub_folder),
        MetricNetwork("lpips-vgg", "LPIPS VGG16 backbone (torchvision ImageNet weights)",
                      _lpips_source("vgg"), _torch_hub_folder),
        MetricNetwork("lpips-squeeze", "LPIPS SqueezeNet 1.1 backbone (torchvision weights)",
                      _lpips_source("squeeze"), _torch_hub_folder),
        MetricNetwork("styleganv-i3d", "rFVD I3D, StyleGAN-V TorchScript (i3d_torchscript.pt)",
                      lambda: STYLEGANV_I3D, _fvd_folder),
        MetricNetwork("videogpt-i3d", "rFVD I3D, VideoGPT/pytorch-i3d (i3d_pretrained_400.pt)",
                      lambda: VIDEOGPT_I3D, _fvd_folder),
        MetricNetwork("inception-fid", "rFID Inception v3 (torch-fidelity's 2015-12-05 port)",
                      _fid_source, _fid_folder),
    )
}  # fmt: skip
DEFAULT_METRICS = (
    "lpips-alex", "lpips-vgg", "styleganv-i3d", "videogpt-i3d", "inception-fid",
)  # fmt: skip


def lpips_network(net: str) -> MetricNetwork:
    return METRIC_NETWORKS[f"lpips-{net}"]


def fvd_network(extractor: str) -> MetricNetwork:
    return METRIC_NETWORKS[extractor]


# --- the --list view ----------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One row of ``vae-bench fetch --list``."""

    name: str
    source: Source
    files: str
    cached: str  # "yes", "no", or what is there


def cached_state(source: Source, folder: Path | None = None) -> str:
    """Whether the source's files are in the cache, asked without a request."""
    if source.kind == URL:
        if folder is None:
            key = hashlib.sha256(source.location.encode()).hexdigest()[:16]
            host = urlsplit(source.location).hostname or "url"
            folder = url_cache_dir() / f"{host}-{key}"
        return "yes" if (folder / source.files[0]).is_file() else "no"
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        snapshot = Path(
            snapshot_download(
                source.location, repo_type=source.repo_type, revision=source.revision,
                allow_patterns=patterns(source), local_files_only=True,
            )
        )  # fmt: skip
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return "no"
    folder = snapshot / source.subfolder if source.subfolder else snapshot
    return "yes" if folder.is_dir() and any(folder.iterdir()) else "no"


def entries() -> list[Entry]:
    from vae_bench.adapters import presets

    rows = []
    for name, preset in presets().items():
        if preset.source is not None:
            source = preset.source
            rows.append(Entry(name, source, _files(source), cached_state(source)))
    for name, net in METRIC_NETWORKS.items():
        source = net.source()
        rows.append(Entry(name, source, _files(source), cached_state(source, net.folder())))
    return rows


def _files(source: Source) -> str:
    names = ", ".join(source.files) if source.files else f"{source.subfolder or '.'}/*"
    details = []
    if source.size is not None:
        details.append(f"{source.size} bytes")
    if source.sha256:
        details.append(f"sha256 {source.sha256}{'...' if len(source.sha256) < 64 else ''}")
    elif source.kind == HUB:
        details.append("sha256 from the hub")
    return f"{names} ({'; '.join(details)})" if details else names
