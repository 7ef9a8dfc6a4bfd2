"""The loopback hub server the hub-id tests use answers huggingface_hub's real download code.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so the
downloads run in a fresh process with the environment a user's job would have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hub_server import hub_server

DOWNLOAD = """
import json, sys
from huggingface_hub import snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
out = {"path": snapshot_download(sys.argv[1])}
try:
    snapshot_download("org/missing")
except RepositoryNotFoundError:
    out["missing"] = "RepositoryNotFoundError"
print(json.dumps(out))
"""


def _download(endpoint: str, home: Path, repo_id: str) -> dict:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD, repo_id], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_snapshot_download_from_the_loopback_hub(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "config.json").write_text('{"model_type": "x"}')
    (repo / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    home = tmp_path / "home"
    with hub_server({"org/tiny": repo}) as server:
        first = _download(server.endpoint, home, "org/tiny")
        path = Path(first["path"])
        assert home in path.parents and first["missing"] == "RepositoryNotFoundError"
        assert (path / "sub" / "weights.bin").read_bytes() == bytes(range(256)) * 4
        downloads = [r for r in server.requests if r.startswith("GET /org/tiny/resolve/")]
        assert len(downloads) == 2
        assert _download(server.endpoint, home, "org/tiny")["path"] == first["path"]
        again = [r for r in server.requests if r.startswith("GET /org/tiny/resolve/")]
        assert again == downloads  # the second run read the files from the cache
