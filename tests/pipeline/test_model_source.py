"""`pipeline.model.source`: a checkpoint directory or hub id as a local directory, the files its
identity covers, and damaged weight files named before any loader reads them. (The hub paths of
every command, against the loopback hub: tests/test_hub_ids.py.)"""

from __future__ import annotations

import pytest
import torch
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
