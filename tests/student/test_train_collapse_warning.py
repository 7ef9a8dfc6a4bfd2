"""`loss.norm_lg=none` with relative teachers: warned of (v2 Table 1's collapse), still run."""

from __future__ import annotations

import logging

from train_helpers import train

from student.config import LossSettings
from student.objective import collapse_warning


def test_warned_only_for_an_unnormalized_local_global_term_with_relative_teachers():
    none = LossSettings(norm_lg="none")
    text = collapse_warning(none, {"dav2": "affine", "metric3d": "metric"})
    assert text is not None and "dav2" in text and "metric3d" not in text
    assert "v2 Table 1" in text and "0.273" in text
    assert collapse_warning(none, {"metric3d": "metric"}) is None
    assert collapse_warning(LossSettings(norm_lg="hybrid"), {"dav2": "affine"}) is None
    no_lg = LossSettings(norm_lg="none", local_global=False)
    assert collapse_warning(no_lg, {"a": "affine"}) is None


def test_training_warns_and_runs(train_setup, tmp_path, caplog):
    dataset, init = train_setup
    with caplog.at_level(logging.WARNING, logger="student"):
        metrics = train(tmp_path / "run", dataset, init, "--steps", "1", "--batch-size", "1",
                        "--set", "loss.norm_lg=none")  # fmt: skip
    assert [m["step"] for m in metrics] == [1]
    assert any("loss.norm_lg=none" in r.getMessage() for r in caplog.records), caplog.text
