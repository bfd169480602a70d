"""The one plain-URL downloader (hub files go through huggingface_hub instead).

The file grows in ``<dest>.part`` beside its destination; after an interruption the next
call continues it with an HTTP Range request. It is checked against the expected size
and sha256 (or a published prefix) and only then renamed onto ``dest`` (``os.replace``:
atomic on one filesystem), so a partial or corrupt file never sits where a complete one
is expected; a file that fails the check is removed. A lock file (``<dest>.lock``) makes
a second process wait for the first and then find the finished file.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from filelock import FileLock
from tqdm.auto import tqdm

CHUNK = 1 << 20
TIMEOUT_S = 60.0
ATTEMPTS = 3  # tries per call while a dropped connection still makes progress
USER_AGENT = "vae-bench (+https://pypi.org/project/vae-bench/)"


class FetchError(Exception):
    """A file could not be fetched or verified; the one-line message says what to do."""


@dataclass(frozen=True)
class FileRecord:
    """One fetched file: where it lies, its sha256 and size (what results record)."""

    name: str
    path: Path
    sha256: str
    size: int


def offline_error(what: str, hint: str = "") -> FetchError:
    """The one line a missing file gets in offline mode: what is missing, how to fetch it."""
    fix = f"; run `{hint}` on a connected machine" if hint else ""
    return FetchError(f"{what} and offline mode is on (--offline or HF_HUB_OFFLINE=1){fix}")


def _hasher(path: Path | None = None) -> Any:
    """A sha256 object holding ``path``'s bytes (empty without a path)."""
    digest = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    return digest


def sha256_of(path: Path) -> str:
    return _hasher(path).hexdigest()


def check_file(
    path: Path, sha256: str = "", size: int | None = None, what: str = "", digest: str = ""
) -> FileRecord:
    """The file's record; a file whose size or sha256 (prefix) is wrong is removed.
    ``digest``: its sha256 when already known (hashed while it was written)."""
    actual_size = path.stat().st_size
    digest = digest or sha256_of(path)
    problem = ""
    if size is not None and actual_size != size:
        problem = f"size {actual_size} bytes, expected {size}"
    elif sha256 and not digest.startswith(sha256):
        problem = f"sha256 {digest}, expected {sha256}{'...' if len(sha256) < 64 else ''}"
    if problem:
        path.unlink(missing_ok=True)
        raise FetchError(f"{what or path.name}: {problem}; the file was removed, fetch it again")
    return FileRecord(path.name, path, digest, actual_size)


def download_url(
    url: str,
    dest: str | Path,
    *,
    sha256: str = "",
    size: int | None = None,
    offline: bool = False,
    hint: str = "",
    progress: bool = True,
    attempts: int = ATTEMPTS,
) -> tuple[FileRecord, bool]:
    """``url`` at ``dest``, downloaded once; returns its record and whether it was fetched now.

    ``offline``: never touch the network; a missing file is an error naming ``hint`` (the
    command that fetches it).
    """
    dest = Path(dest).expanduser()
    if dest.is_file():
        return check_file(dest, sha256, size), False
    if offline:
        raise offline_error(f"{dest.name} is not cached at {dest}", hint)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"cannot create {dest.parent}: {error.strerror}") from None
    with FileLock(f"{dest}.lock"):
        if dest.is_file():  # another process finished it while this one waited
            return check_file(dest, sha256, size), False
        part = dest.with_name(dest.name + ".part")
        digest = _transfer(url, part, attempts, progress)
        record = check_file(part, sha256, size, what=f"{url} ({dest.name})", digest=digest)
        os.replace(part, dest)
    return FileRecord(dest.name, dest, record.sha256, record.size), True


def _transfer(url: str, part: Path, attempts: int, progress: bool) -> str:
    """Bring ``part`` to the whole file, continuing what an earlier call left there;
    returns its sha256 (computed while writing)."""
    for attempt in range(1, attempts + 1):
        before = part.stat().st_size if part.exists() else 0
        try:
            return _transfer_once(url, part, progress).hexdigest()
        except _Dropped as dropped:
            grown = (part.stat().st_size if part.exists() else 0) > before
            if attempt == attempts or not grown:
                raise FetchError(
                    f"{url}: connection lost after {dropped.have} of {dropped.total} bytes "
                    f"({dropped.reason}); run again to resume from {part}"
                ) from None
    raise AssertionError("unreachable")  # the last attempt returns or raises


class _Dropped(Exception):
    def __init__(self, have: int, total: int | str, reason: str) -> None:
        self.have, self.total, self.reason = have, total, reason


def _transfer_once(url: str, part: Path, progress: bool) -> Any:
    """One request for the rest of the file; returns the sha256 object of the whole part."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as error:
        if error.code == 416 and offset:  # the part is not a prefix of this file: start over
            part.unlink()
            return _transfer_once(url, part, progress)
        raise FetchError(
            f"{url}: HTTP {error.code} {error.reason}{_http_hint(error.code)}"
        ) from None
    except (URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise FetchError(
            f"{url}: cannot connect ({reason}); check the network, or run with the file "
            "already cached (--offline)"
        ) from None
    with response:
        if offset and response.status != 206:  # the server ignored the Range: start over
            offset = 0
        digest = _hasher(part if offset else None)  # the kept prefix, hashed once
        length = response.headers.get("Content-Length")
        total: int | str = offset + int(length) if length is not None else "?"
        have = offset
        try:
            with (
                open(part, "ab" if offset else "wb") as out,
                tqdm(
                    total=total if isinstance(total, int) else None, initial=offset, unit="B",
                    unit_scale=True, unit_divisor=1024, desc=part.name[: -len(".part")],
                    disable=not progress or not sys.stderr.isatty(), leave=False,
                ) as bar,
            ):  # fmt: skip
                while block := response.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    have += len(block)
                    bar.update(len(block))
        except (http.client.HTTPException, TimeoutError, ConnectionError) as error:
            raise _Dropped(have, total, type(error).__name__) from None
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise FetchError(
                    f"disk full while writing {part} ({have} bytes kept); free space and run "
                    "again to resume"
                ) from None
            raise _Dropped(have, total, str(error)) from None
        if isinstance(total, int) and have < total:
            raise _Dropped(have, total, "the server closed the connection early")
    return digest


def _http_hint(code: int) -> str:
    if code in (401, 403):
        return " (access denied: a gated or private file needs a login or token)"
    if code == 404:
        return " (no such file: check the URL or the release)"
    return ""
