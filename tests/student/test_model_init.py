"""What --init loads: every weight, or only the encoder (the DPT neck and head at random)."""

from __future__ import annotations

import pytest
import torch
from train_helpers import train

from student.config import TrainSettings
from student.model import load_student


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_encoder_only_keeps_the_encoder_and_draws_a_new_head(train_setup):
    _, init = train_setup
    full = load_student(init)
    torch.manual_seed(1234)  # not the tiny checkpoint's own seed
    enc = load_student(init, weights="encoder")
    assert _same(enc.model.backbone, full.model.backbone)
    assert _same(enc.frozen, full.model.backbone)  # feature alignment to the loaded encoder
    assert not _same(enc.model.head, full.model.head)
    assert not _same(enc.model.neck, full.model.neck)
    torch.manual_seed(1234)
    again = load_student(init, weights="encoder")
    assert _same(again.model, enc.model)  # the run's seed fixes the random head


def test_unknown_init_weights_are_refused(train_setup):
    _, init = train_setup
    with pytest.raises(ValueError, match="full, encoder"):
        load_student(init, weights="head")
    with pytest.raises(ValueError, match="full or encoder"):
        TrainSettings(init_weights="decoder").validate()


def test_a_run_records_and_uses_encoder_only_init(train_setup, tmp_path):
    dataset, init = train_setup
    run = tmp_path / "run"
    train(run, dataset, init, "--steps", "1", "--batch-size", "1", "--set", "init_weights=encoder")
    assert "init_weights: encoder" in (run / "config.yaml").read_text()
