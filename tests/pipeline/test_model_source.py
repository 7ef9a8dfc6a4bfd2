"""`pipeline.model.source`: a checkpoint directory or hub id as a local directory, the files its
identity covers, and damaged weight files named before any loader reads them. (The hub paths of
every command, against the loopback hub: tests/test_hub_ids.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_server import hub_server
from safetensors.torch import save_file

from pipeline.model.depth_anything import write_depth_anything
from pipeline.model.source import (
    CheckpointUnavailable,
    DamagedCheckpoint,
    identity_files,
    resolve_checkpoint,
    safetensors_problem,
)


def test_identity_covers_what_the_loaders_read(tmp_path):
    for name in (
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",  # shadowed by model.safetensors
        "README.md",
        "onnx/model.onnx",
        "unet/diffusion_pytorch_model.bin",  # read: no safetensors in unet/
        "unet/diffusion_pytorch_model.fp16.bin",  # a precision variant
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "tf_model.h5",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in identity_files(tmp_path)]
    assert names == [
        "config.json",
        "model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.safetensors",
    ]


def test_safetensors_problem_reads_the_header_only(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(8, 8), "b": torch.ones(3)}, str(path))
    data = path.read_bytes()
    assert safetensors_problem(path) is None
    path.write_bytes(data[:-1])
    assert "truncated or damaged" in safetensors_problem(path)
    path.write_bytes(data + b"\0")
    assert "truncated or damaged" in safetensors_problem(path)
    path.write_bytes(b"\x10" + b"\0" * 7 + b"not json at all!")
    assert "not a safetensors file" in safetensors_problem(path)
    path.write_bytes(b"")
    assert "no complete header" in safetensors_problem(path)


def test_a_directory_is_used_as_it_is_and_a_damaged_one_is_named(tmp_path):
    ckpt = tmp_path / "ckpt"
    write_depth_anything(ckpt, "tiny")
    assert resolve_checkpoint(str(ckpt), "--init") == ckpt.resolve()
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(DamagedCheckpoint, match=f"--init: weight file {weights} is damaged"):
        resolve_checkpoint(ckpt, "--init")
    with pytest.raises(FileNotFoundError, match="--init: directory ./nowhere does not exist"):
        resolve_checkpoint("./nowhere", "--init")


def test_student_init_with_a_damaged_weight_file_is_one_line(tmp_path):
    from student.model import load_student

    ckpt = tmp_path / "ckpt"
    write_depth_anything(ckpt, "tiny")
    (ckpt / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(DamagedCheckpoint, match="--init: weight file .*not a safetensors") as err:
        load_student(ckpt)
    assert "\n" not in str(err.value)


def test_offline_hub_id_not_in_the_cache_is_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointUnavailable) as err:
        resolve_checkpoint("org/absent", "--init", revision="v2")
    message = str(err.value)
    assert message.startswith("--init: hub id 'org/absent' at revision 'v2' is not in the")
    assert "`hf download org/absent --revision v2`" in message and "\n" not in message


RESOLVE = """
import json, sys
from pipeline.model.source import resolve_checkpoint
out = []
for repo, revision, subfolder in json.loads(sys.argv[1]):
    try:
        out.append(str(resolve_checkpoint(repo, "--x", revision, subfolder)))
    except OSError as err:
        out.append("error: " + str(err))
print(json.dumps(out))
"""


def _resolve(server, home, calls: list) -> list[str]:
    env = {**os.environ, "HF_ENDPOINT": server.endpoint, "HF_HOME": str(home)}
    env.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1")
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE, json.dumps(calls)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_hub_revisions_subfolders_and_unknown_ids_against_the_loopback_hub(tmp_path):
    repo = tmp_path / "repo"
    for name in ("model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.ones(2)}, str(repo / name))
    (repo / "config.json").write_text("{}")
    (repo / "vae" / "config.json").write_text("{}")
    (repo / "README.md").write_text("# not downloaded")
    with hub_server({"org/pipe": repo}) as server:
        commit = server.repos["org/pipe"].commit
        vae, at_commit, no_rev, no_repo = _resolve(
            server,
            tmp_path / "hf",
            [
                ["org/pipe", None, "vae"],
                ["org/pipe", commit, None],
                ["org/pipe", "v9", None],
                ["org/nothing", None, None],
            ],
        )
    assert Path(at_commit).name == commit and Path(vae) == Path(at_commit)
    files = sorted(p.relative_to(at_commit).as_posix() for p in Path(at_commit).rglob("*.*"))
    assert files == [
        "config.json",
        "model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]  # no README
    fetched = [r.rsplit("/", 2)[-2:] for r in server.requests if "/resolve/" in r and "GET" in r]
    assert fetched.count(["vae", "config.json"]) == 1  # the subfolder first, then the rest
    assert (
        no_rev == "error: --x: hub id 'org/pipe' has no revision 'v9'; give a branch, tag "
        "or commit it has (option revision=), or leave it out for main"
    )
    assert no_repo.startswith("error: --x: 'org/nothing' is not a local directory, and the hub")
