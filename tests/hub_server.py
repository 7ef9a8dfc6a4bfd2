"""A Hugging Face Hub-compatible file server on 127.0.0.1, for tests of the hub-id paths.

    with hub_server({"org/tiny-dav2": checkpoint_dir}) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)   # plus an empty HF_HOME
        ...                                           # the real download code runs

It serves what `huggingface_hub`'s `snapshot_download` / `hf_hub_download` ask for: the model
info of a revision (`/api/models/{id}/revision/{rev}`), the recursive file tree
(`/api/models/{id}/tree/{rev}`) and the files (`/{id}/resolve/{rev}/{path}`, HEAD and GET, with
the commit, ETag and size headers). Every repo has one branch, `main`, at a commit derived from
its files, and answers that commit hash as a revision too. Unknown repos and files are 404 with
the hub's error header, as the real hub answers. `requests` records every path asked for, so a
test can check that a second run read the cache instead of the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self, root: Path) -> None:
        self.files = {
            p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()
        }
        digest = hashlib.sha1()
        for name, path in self.files.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        self.commit = digest.hexdigest()

    def knows(self, revision: str) -> bool:
        return revision in ("main", self.commit)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, Path]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.repos = {repo_id: _Repo(Path(root)) for repo_id, root in repos.items()}
        self.requests: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        self.server.requests.append(f"{self.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            self._api("/".join(parts[2:4]), parts[4], parts[5], body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._file("/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        else:
            self._missing("Entry not found", "EntryNotFound", body)

    def _repo(self, repo_id: str, revision: str, body: bool) -> _Repo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._missing("Repository not found", "RepoNotFound", body)
        elif not repo.knows(revision):
            self._missing(f"Invalid rev id: {revision}", "RevisionNotFound", body)
        else:
            return repo
        return None

    def _api(self, repo_id: str, kind: str, revision: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body)
        if repo is None:
            return
        entries = [
            {"type": "file", "path": n, "size": p.stat().st_size, "oid": _etag(p)}
            for n, p in repo.files.items()
        ]
        if kind == "tree":
            payload: object = entries
        else:
            siblings = [{"rfilename": e["path"], "size": e["size"]} for e in entries]
            payload = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "siblings": siblings}
        self._send(200, json.dumps(payload).encode(), "application/json", {}, body)

    def _file(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body)
        if repo is None:
            return
        path = repo.files.get(name)
        if path is None:
            self._missing(f"{name} not found", "EntryNotFound", body, repo.commit)
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{_etag(path)}"'}
        self._send(200, path.read_bytes(), "application/octet-stream", headers, body)

    def _missing(self, message: str, code: str, body: bool, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        payload = json.dumps({"error": message}).encode()
        self._send(404, payload, "application/json", headers, body)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _etag(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def hub_server(repos: dict[str, Path]) -> Iterator[HubServer]:
    """Serve `{repo id: directory}` on a free loopback port until the block ends."""
    server = HubServer(repos)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
