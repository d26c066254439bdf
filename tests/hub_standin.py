"""A stand-in for the Hugging Face Hub's HTTP endpoints, served from test files.

Only the network is stood in: ``lock`` runs the real huggingface_hub client
against it (``HF_ENDPOINT``). It answers what that client asks for a model --
``/api/models/{repo}[/revision/{rev}]`` (the commit), ``HEAD`` and ranged
``GET`` on ``/{repo}/resolve/{rev}/{file}`` -- with the headers the Hub sends
(``X-Repo-Commit``, ``ETag``, ``X-Error-Code``), and records every request so a
test can prove that no weights were read.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Repo:
    files: dict[str, Path]  # name in the repo -> file on disk (sparse safetensors are fine)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    token: str | None = None  # gated: only this bearer token may read it


@dataclass
class Hub:
    repos: dict[str, Repo]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002 - the base class signature
            return

        def _fail(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            body = json.dumps({"error": code}).encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _repo(self, name: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._fail(404, "RepoNotFound")
                return None
            if repo.token is not None and self.headers.get("Authorization") != f"Bearer {repo.token}":
                self._fail(401 if self.headers.get("Authorization") is None else 403, "GatedRepo")
                return None
            return repo

        def _serve(self) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            path = self.path.split("?", 1)[0]
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
            if api is not None:
                repo = self._repo(api.group(1))
                if repo is None:
                    return
                body = json.dumps(
                    {"id": api.group(1), "sha": repo.commit, "siblings": [{"rfilename": f} for f in sorted(repo.files)]}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if resolve is None:
                self._fail(404, "EntryNotFound")
                return
            repo = self._repo(resolve.group(1))
            if repo is None:
                return
            if resolve.group(2) not in (repo.commit, "main"):
                self._fail(404, "RevisionNotFound")
                return
            source = repo.files.get(resolve.group(3))
            if source is None:
                self._fail(404, "EntryNotFound")
                return
            size = source.stat().st_size
            start, end = 0, size - 1
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if ranged:
                start = int(ranged.group(1))
                end = min(int(ranged.group(2)) if ranged.group(2) else size - 1, size - 1)
            self.send_response(206 if ranged else 200)
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("ETag", '"' + hashlib.sha256(f"{source}:{size}".encode()).hexdigest() + '"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1 if self.command == "GET" else size))
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "GET":
                with source.open("rb") as f:
                    f.seek(start)
                    self.wfile.write(f.read(end - start + 1))

        do_GET = _serve
        do_HEAD = _serve

    return Handler


@contextmanager
def serving(repos: dict[str, Repo]) -> Iterator[Hub]:
    """The stand-in on 127.0.0.1, an ephemeral port, for the block's duration."""
    hub = Hub(repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
