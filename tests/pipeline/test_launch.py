"""Launch options (`pipeline.toolkit.launch.Launch`): one dataclass every command takes, valid
once built; a bad value is a one-line error naming the flag."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from pipeline.toolkit.launch import PRECISION_NAMES, Launch, check_precision_name


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"device": "cdua"}, "--device"),
        ({"device": "cuda:x"}, "--device"),
        ({"workers": -1}, "--workers"),
        ({"precision": "fp8"}, "--precision"),
    ],
)
def test_a_launch_that_exists_is_valid(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        Launch(**kwargs)
    with pytest.raises(ValueError, match=flag):  # also when changed after building
        dataclasses.replace(Launch(), **kwargs)


def test_every_device_torch_names_and_auto_are_accepted():
    for device in ("auto", "cpu", "cuda", "cuda:3", "mps", "xpu:0"):
        assert Launch(device=device).device == device
    assert Launch(workers=0).workers == 0 and Launch().workers is None


def test_precision_names_have_one_check_and_map_to_dtypes():
    import torch

    from pipeline.model.precision import PRECISIONS, check_precision

    assert tuple(PRECISIONS) == PRECISION_NAMES
    assert check_precision("bf16") is torch.bfloat16 and check_precision_name("fp16") == "fp16"
    with pytest.raises(ValueError, match="--precision must be one of bf16, fp16, fp32"):
        check_precision("fp64")


def test_a_command_refuses_a_bad_launch_option_in_one_line(tmp_path):
    from evaluation.cli import app

    args = ["score", str(tmp_path), "--dataset", "middlebury", "--device", "gpu0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "--device must be auto, cpu, cuda, cuda:N, mps or xpu, got 'gpu0'" in result.output
    assert "Traceback" not in result.output
