"""A server on 127.0.0.1 that speaks the Hugging Face hub routes huggingface_hub uses, and
serves plain files, with faults on request (404, gated, dropped connections, wrong bytes).

Hub routes: ``GET /api/{models,spaces}/ORG/NAME/revision/REV`` (repo info: the commit),
``GET /api/.../tree/COMMIT[/PATH]`` (the file listing, with LFS sha256), ``HEAD/GET
[/spaces]/ORG/NAME/resolve/REV/PATH`` (a file, Range honoured). Plain files:
``/files/NAME``. Every request is recorded, so a test can assert that none was made.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_RANGE = re.compile(r"bytes=(\d+)-$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    gated: bool = False


@dataclass
class Faults:
    """Per-path faults: ``drop[path]`` responses cut after ``cut`` bytes (then normal),
    ``corrupt`` paths served with one byte changed, ``slow`` seconds per 64 KiB block,
    ``no_range`` paths served whole whatever the Range header asks."""

    drop: dict[str, int] = field(default_factory=dict)
    cut: int = 0
    corrupt: set[str] = field(default_factory=set)
    slow: float = 0.0
    no_range: set[str] = field(default_factory=set)


class Loopback:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.plain: dict[str, bytes] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model",
                 gated: bool = False) -> str:  # fmt: skip
        """Publish ``files`` as a new commit of the repo; returns the commit hash."""
        commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
        self.repos[(repo_type, repo_id)] = Repo(dict(files), commit, gated)
        return commit

    def count(self, path_part: str = "", method: str = "") -> int:
        with self._lock:
            return sum(
                1 for m, p, _ in self.requests if path_part in p and (not method or m == method)
            )

    def record(self, method: str, path: str, range_header: str) -> None:
        with self._lock:
            self.requests.append((method, path, range_header))


def _etag(path: str, data: bytes) -> str:
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return git_blob_sha1(data)


def _handler(hub: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(body=False)

        def do_GET(self) -> None:
            self._route(body=True)

        # --- routing -----------------------------------------------------------------
        def _route(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            hub.record(self.command, path, self.headers.get("Range", ""))
            if path.startswith("/files/"):
                name = path[len("/files/") :]
                if name not in hub.plain:
                    return self._error(404, "EntryNotFound")
                return self._file(name, hub.plain[name], body, {})
            match = re.match(r"^/api/(models|spaces|datasets)/([^/]+/[^/]+)/(revision|tree)/"
                             r"([^/]+)(?:/(.*))?$", path)  # fmt: skip
            if match:
                kind, repo_id, what, _, sub = match.groups()
                repo = self._repo(kind[:-1], repo_id)
                if repo is None:
                    return None
                if what == "revision":
                    siblings = [{"rfilename": name} for name in repo.files]
                    return self._json({"id": repo_id, "sha": repo.commit, "siblings": siblings})
                return self._json(self._tree(repo, sub or ""))
            match = re.match(r"^/(?:(spaces|datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if match:
                kind, repo_id, _, name = match.groups()
                repo = self._repo(kind[:-1] if kind else "model", repo_id)
                if repo is None:
                    return None
                if name not in repo.files:
                    return self._error(404, "EntryNotFound")
                data = repo.files[name]
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{_etag(name, data)}"'}
                return self._file(name, data, body, headers)
            return self._error(404, "RepoNotFound")

        def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
            repo = hub.repos.get((repo_type, repo_id))
            if repo is None:
                self._error(404, "RepoNotFound")
            elif repo.gated:
                self._error(403, "GatedRepo")
                return None
            return repo

        @staticmethod
        def _tree(repo: Repo, sub: str) -> list[dict]:
            entries = []
            for name, data in sorted(repo.files.items()):
                if sub and not name.startswith(sub.rstrip("/") + "/"):
                    continue
                oid = git_blob_sha1(data)
                entry = {"type": "file", "path": name, "size": len(data), "oid": oid}
                if name.endswith(LFS_SUFFIXES):
                    lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                           "pointerSize": 134}  # fmt: skip
                    entry["lfs"] = lfs
                entries.append(entry)
            return entries

        # --- responses ---------------------------------------------------------------
        def _error(self, status: int, code: str) -> None:
            payload = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _json(self, value: object) -> None:
            payload = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _file(self, name: str, data: bytes, body: bool, headers: dict[str, str]) -> None:
            if name in hub.faults.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            match = _RANGE.match(self.headers.get("Range", ""))
            if name in hub.faults.no_range:
                match = None
            if match and int(match.group(1)) >= len(data) > 0:
                return self._error(416, "RangeNotSatisfiable")
            if match:
                start = int(match.group(1))
            self.send_response(206 if start else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not body:
                return None
            payload = data[start:]
            if body and hub.faults.drop.get(name, 0) > 0:
                hub.faults.drop[name] -= 1
                self.wfile.write(payload[: hub.faults.cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the peer sees the connection end early
                return None
            block = 1 << 16
            for offset in range(0, len(payload), block):
                self.wfile.write(payload[offset : offset + block])
                if hub.faults.slow:
                    time.sleep(hub.faults.slow)
            return None

    return Handler
