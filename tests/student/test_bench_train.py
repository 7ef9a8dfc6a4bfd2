"""The training-step benchmark runs end to end in its tiny-model smoke mode."""

from __future__ import annotations

import json

import pytest

from student.bench.train import main


@pytest.mark.slow
def test_train_benchmark_smoke(capsys, tmp_path):
    main(["--smoke", "--workdir", str(tmp_path)])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["student"] == "tiny" and row["real_step_s"] > 0 and row["replay_step_s"] > 0
    assert row["data_stall"] == pytest.approx(1 - row["replay_step_s"] / row["real_step_s"])
