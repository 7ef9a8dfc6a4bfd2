"""The labelgen benchmarks run end to end (the GPU one in its tiny-model smoke mode)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelgen.bench.labelling import main


@pytest.mark.slow
def test_gpu_benchmark_smoke_mode_runs_on_cpu(capsys, tmp_path):
    main(["gpu", "--smoke", "--images", "2", "--batch", "4", "--workdir", str(tmp_path)])
    rows = json.loads(capsys.readouterr().out)
    assert [r["teacher"] for r in rows] == ["dav2-large", "genpercept"]
    assert all(r["views"] > 0 and r["labelgen_over_bare"] > 0 for r in rows)


@pytest.mark.slow
def test_cpu_benchmark_reports_forward_share(capsys, tmp_path):
    main(["cpu", "--images", "2", "--repeats", "1", "--workdir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["forward_share"] <= 1.5
    assert result["encode_s"] > 0 and result["decode_and_views_s"] > 0


@pytest.mark.slow
def test_startup_benchmark_times_a_tree_against_a_baseline(capsys, tmp_path):
    repo = Path(__file__).resolve().parents[2]
    args = ["--smoke", "--repeats", "1", "--baseline", str(repo), "--workdir", str(tmp_path)]
    main(["startup", *args])
    result = json.loads(capsys.readouterr().out)
    assert 0 < result["this_from_run_s"] < result["this_from_process_s"]
    assert result["baseline_over_this_from_run_s"] > 0
