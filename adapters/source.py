"""Where a release's files are published: a Hugging Face hub repo (folder, revision) or a URL.

A :class:`Source` is a fact about a release, kept with its preset so that `vae-bench
fetch` can download exactly those files and a table can say which release it measured.
Users name other checkpoints the same way in a sweep's ``weights``:
``hf://org/repo[/subfolder][@revision]`` (``hf://spaces/...``, ``hf://datasets/...`` for
other repo types) or an ``https://`` URL of one file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from vae_bench.adapters.base import AdapterError

HUB = "hf"
URL = "url"
REPO_TYPES = {"models": "model", "spaces": "space", "datasets": "dataset"}
# config + safetensors weights, as diffusers' save_pretrained writes a model folder
DIFFUSERS_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
_HEX = re.compile(r"[0-9a-f]+")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Source:
    """A release's files. ``kind`` is ``hf`` (``location`` = ``org/name``) or ``url``.

    ``files``: paths inside ``subfolder`` (hub) or the one file name to save as (url);
    empty means every file of the hub folder. ``sha256``: the full hash or a published
    prefix (torch.hub names its files ``name-<first 8+ hex digits>.pth``); empty when the
    publisher states none. ``size``: bytes, when published. ``note``: what is not
    verified, shown by ``vae-bench fetch --list``.
    """

    kind: str
    location: str
    subfolder: str = ""
    revision: str = "main"
    files: tuple[str, ...] = ()
    repo_type: str = "model"
    sha256: str = ""
    size: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (HUB, URL):
            raise AdapterError(f"source kind must be {HUB} or {URL}, got {self.kind!r}")
        if self.sha256 and not _HEX.fullmatch(self.sha256):
            raise AdapterError(f"source sha256 must be lower-case hex, got {self.sha256!r}")
        if self.kind == URL and len(self.files) != 1:
            raise AdapterError(f"a URL source names exactly one file, got {self.files!r}")

    @classmethod
    def parse(cls, text: str) -> Source:
        """``hf://org/repo[/subfolder][@revision]`` or an ``http(s)://`` URL of one file."""
        text = text.strip()
        if text.startswith("hf://"):
            return _parse_hub(text)
        if text.startswith(("https://", "http://")):
            name = urlsplit(text).path.rsplit("/", 1)[-1]
            if not name:
                raise AdapterError(f"{text!r}: the URL must end with a file name")
            return cls(URL, text, files=(name,), revision="")
        raise AdapterError(
            f"{text!r} is not a source; write hf://org/repo[/subfolder][@revision] or an "
            "https:// URL"
        )

    @staticmethod
    def is_remote(text: str) -> bool:
        """Whether a ``weights`` value names a remote source (not a path or a keyword)."""
        return str(text).startswith(("hf://", "https://", "http://"))

    @property
    def web_url(self) -> str:
        """The page a person opens to see the release."""
        if self.kind == URL:
            return self.location
        prefix = {"model": "", "space": "spaces/", "dataset": "datasets/"}[self.repo_type]
        tree = f"/tree/{self.revision}/{self.subfolder}" if self.subfolder else ""
        return f"https://huggingface.co/{prefix}{self.location}{tree}"

    def __str__(self) -> str:
        if self.kind == URL:
            return self.location
        prefix = {"model": "", "space": "spaces/", "dataset": "datasets/"}[self.repo_type]
        folder = f"/{self.subfolder}" if self.subfolder else ""
        revision = f"@{self.revision}" if self.revision != "main" else ""
        return f"hf://{prefix}{self.location}{folder}{revision}"


def _parse_hub(text: str) -> Source:
    body, _, revision = text[len("hf://") :].partition("@")
    parts = [p for p in body.split("/") if p]
    repo_type = "model"
    if parts and parts[0] in REPO_TYPES:
        repo_type = REPO_TYPES[parts.pop(0)]
    if len(parts) < 2 or not all(_REPO_PART.fullmatch(p) for p in parts) or ".." in parts:
        raise AdapterError(
            f"{text!r}: write hf://org/repo[/subfolder][@revision] (letters, digits, . _ -)"
        )
    if "@" in text and not revision:
        raise AdapterError(f"{text!r}: empty revision after '@'")
    return Source(
        HUB,
        "/".join(parts[:2]),
        subfolder="/".join(parts[2:]),
        revision=revision or "main",
        repo_type=repo_type,
    )
