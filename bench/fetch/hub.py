"""Hugging Face hub files through huggingface_hub, in its cache (HF_HOME, HF_HUB_CACHE,
HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE behave as in every other hub client).

The cache is asked first, with no request: a folder fetched once is used as it is (the
commit it came from is recorded). huggingface_hub downloads into ``.incomplete`` files
it resumes and renames, under a lock. Each file is then checked against the hash the hub
published for it (the blob's name: sha256 for LFS files, the git blob sha1 otherwise); a
file that fails is removed from the cache.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vae_bench.adapters.source import Source
from vae_bench.fetch.download import CHUNK, FetchError, FileRecord, check_file, offline_error

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubFiles:
    """A fetched hub folder: its local path, the commit and the files taken from it."""

    folder: Path
    commit: str
    files: tuple[FileRecord, ...]
    fetched: bool  # False: everything came from the cache


def patterns(source: Source) -> list[str]:
    """huggingface_hub ``allow_patterns`` for the source's files (all of its folder if none)."""
    prefix = f"{source.subfolder}/" if source.subfolder else ""
    return [prefix + name for name in source.files] or [prefix + "*"]


def fetch_hub(source: Source, *, offline: bool, hint: str = "") -> HubFiles:
    """The source's files, from the cache or (unless ``offline``) the hub."""
    from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        return _collect(source, _snapshot(source, local_only=True), fetched=False)
    except (LocalEntryNotFoundError, IncompleteSnapshotError, _Missing):
        pass
    if offline:
        raise offline_error(f"{source} is not in the huggingface_hub cache", hint)
    try:
        return _collect(source, _snapshot(source, local_only=False), fetched=True)
    except _Missing as missing:
        raise FetchError(f"{source}: {missing}") from None


class _Missing(Exception):
    """The snapshot lacks files the source names."""


def _snapshot(source: Source, *, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            source.location,
            repo_type=source.repo_type,
            revision=source.revision,
            allow_patterns=patterns(source),
            local_files_only=local_only,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
        )
    except (LocalEntryNotFoundError, IncompleteSnapshotError):
        if local_only:
            raise
        raise FetchError(
            f"{source}: cannot reach the hub ({os.environ.get('HF_ENDPOINT') or 'huggingface.co'})"
            " and the files are not cached; check the network"
        ) from None
    except OfflineModeIsEnabled:
        if local_only:
            raise LocalEntryNotFoundError("offline") from None
        raise FetchError(f"{source}: offline mode is on (HF_HUB_OFFLINE=1)") from None
    except GatedRepoError:
        raise FetchError(
            f"{source} is gated: accept its terms at {source.web_url} and log in "
            "(hf auth login, or the HF_TOKEN variable)"
        ) from None
    except RepositoryNotFoundError:
        raise FetchError(
            f"{source}: no such repository (or a private one: log in with hf auth login "
            "or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise FetchError(f"{source}: no revision {source.revision!r} in the repository") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise FetchError(f"{source}: HTTP {status} from the hub: {_first_line(error)}") from None
    except (OSError, *_transport_errors()) as error:
        if getattr(error, "errno", None) == errno.ENOSPC:
            raise FetchError(f"{source}: disk full; free space and run again to resume") from None
        raise FetchError(
            f"{source}: download interrupted ({_first_line(error)}); run again to resume"
        ) from None
    return Path(folder)


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's connection errors (huggingface_hub has used requests, httpx and
    httpx2 across versions; whichever is installed)."""
    found = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"),
                         ("requests", "RequestException")):  # fmt: skip
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _collect(source: Source, snapshot: Path, *, fetched: bool) -> HubFiles:
    folder = snapshot / source.subfolder if source.subfolder else snapshot
    wanted = patterns(source)
    names = sorted(
        path.relative_to(snapshot).as_posix()
        for path in snapshot.rglob("*")
        if path.is_file() and any(fnmatch.fnmatch(path.relative_to(snapshot).as_posix(), p)
                                  for p in wanted)
    )  # fmt: skip
    for pattern in wanted:  # a name without wildcards must be there; a glob must match
        if not any(fnmatch.fnmatch(name, pattern) for name in names):
            if pattern.endswith("*.safetensors.index.json"):
                continue  # only sharded weights have one
            raise _Missing(f"no file matching {pattern!r} in the repository")
    records = tuple(_verified(snapshot / name, name, source) for name in names)
    prefix = f"{source.subfolder}/" if source.subfolder else ""
    records = tuple(FileRecord(r.name[len(prefix) :], r.path, r.sha256, r.size) for r in records)
    return HubFiles(folder, snapshot.name, records, fetched)


def _verified(path: Path, name: str, source: Source) -> FileRecord:
    """Check a cached file against the hub's hash for it (its blob's name)."""
    blob = path.resolve()
    published = blob.name
    if _SHA256.fullmatch(published):
        record = _check_or_remove(path, blob, published, name, source)
    else:
        record = check_file(blob, what=f"{source} {name}")
        if _SHA1.fullmatch(published) and _git_blob_sha1(blob) != published:
            _remove(path, blob)
            raise FetchError(
                f"{source} {name}: content does not match the hub's git hash {published}; "
                "the file was removed, fetch it again"
            )
    return FileRecord(name, path, record.sha256, record.size)


def _check_or_remove(path: Path, blob: Path, sha256: str, name: str, source: Source) -> FileRecord:
    try:
        return check_file(blob, sha256, what=f"{source} {name}")
    except FetchError:
        _remove(path, blob)
        raise


def _remove(path: Path, blob: Path) -> None:
    for item in (path, blob):
        if item.is_symlink() or item.exists():
            item.unlink()


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
