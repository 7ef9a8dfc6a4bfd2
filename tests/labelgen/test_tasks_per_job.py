"""Many shards per SLURM array task: `labelgen run --tasks-per-job N` (array task t of T runs the
shares of workers t, t+T, ... of a T*N split, teacher loaded once), the array `labelgen missing`
caps at `--max-array`, and `docker/slurm_labelgen.sbatch` taking the printed SHARDS and
TASKS_PER_JOB: together they label every listed shard exactly once."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from lgrun_helpers import clean_env, column_bytes, copy_dataset, spec_str
from test_missing import EXTRA, damage, five, five_labelled, missing  # noqa: F401 - fixtures
from typer.testing import CliRunner

import labelgen.run
from labelgen.cli import app
from labelgen.missing import Resubmission
from labelgen.run import job_share
from pipeline.toolkit.distributed import WorkerInfo

SBATCH = Path(__file__).resolve().parents[2] / "docker" / "slurm_labelgen.sbatch"


@pytest.mark.parametrize("tasks", [1, 2, 3, 7])
@pytest.mark.parametrize("per_job", [1, 2, 5])
def test_job_share_covers_every_item_once(tasks, per_job):
    items = list(range(23))
    shares = [job_share(items, WorkerInfo(t, tasks, "slurm-array"), per_job) for t in range(tasks)]
    assert sorted(x for share in shares for x in share) == items
    world = tasks * per_job
    for t, share in enumerate(shares):  # the shares of workers t, t+T, ... of T*N, in turn
        expected = [i for r in range(t, world, tasks) for i in items if i % world == r]
        assert share == expected


@pytest.mark.parametrize(
    ("count", "cap", "per_job", "size"),
    [(3, 1000, 1, 3), (1000, 1000, 1, 1000), (1001, 1000, 2, 501), (2500, 1000, 3, 834)],
)
def test_array_stays_under_the_cap_and_covers_the_list(count, cap, per_job, size):
    shards = [f"{i:06d}" for i in range(0, 2 * count, 2)]
    r = Resubmission(["--teacher", "a=hf:x"], ["a"], shards, [], [], cap)
    assert (r.tasks_per_job, r.array_size) == (per_job, size) and size <= cap
    assert f"--array=0-{size - 1}" in r.sbatch(Path("/d"))
    assert ("TASKS_PER_JOB" in r.sbatch(Path("/d"))) == (per_job > 1)
    shares = [job_share(shards, WorkerInfo(t, size, "slurm-array"), per_job) for t in range(size)]
    assert sorted(s for share in shares for s in share) == shards


def _fake_slurm(bin_dir: Path, record: Path) -> None:
    """`sbatch --array=0-K SCRIPT ARGS` runs SCRIPT once per array task with SLURM's variables;
    `srun` writes the command it was given, one JSON line per task."""
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/bash\nset -e\nlast=${1#--array=0-}; shift\nscript=$1; shift\n"
        "for ((t=0; t<=last; t++)); do SLURM_ARRAY_TASK_ID=$t SLURM_ARRAY_TASK_COUNT=$((last+1)) "
        'SLURM_CPUS_PER_TASK=1 bash "$script" "$@"; done\n'
    )
    srun = bin_dir / "srun"
    srun.write_text(
        '#!/bin/bash\npython -c \'import json, os, sys; print(json.dumps({"argv": sys.argv[1:], '
        '"task": os.environ["SLURM_ARRAY_TASK_ID"], "count": os.environ["SLURM_ARRAY_TASK_COUNT"]'
        f'}}))\' "$@" >> {shlex.quote(str(record))}\n'
    )
    sbatch.chmod(0o755)
    srun.chmod(0o755)


def test_printed_array_labels_every_missing_shard_once(request, ckpt, tmp_path, monkeypatch):
    reference = request.getfixturevalue("five_labelled")
    ds = copy_dataset(reference, tmp_path / "ds")
    damage(ds)  # 000001-000004 to label (000004 with --redo, found by --verify)
    result = missing(ds, "--teacher", spec_str("dav", ckpt), "--verify", "--max-array", "3")
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert "or as a SLURM array of 2 tasks, up to 2 shards each:" in lines
    sbatch_line = lines[lines.index("or as a SLURM array of 2 tasks, up to 2 shards each:") + 1]
    assert "--array=0-1" in sbatch_line and "TASKS_PER_JOB=2" in sbatch_line

    # The printed line, run by bash against fake sbatch/srun: what each array task would run.
    record = tmp_path / "tasks.jsonl"
    _fake_slurm(tmp_path / "bin", record)
    env = {**clean_env(), "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    line = sbatch_line.replace("docker/slurm_labelgen.sbatch", shlex.quote(str(SBATCH)))
    subprocess.run(["bash", "-c", line], env=env, check=True, cwd=tmp_path)
    tasks = [json.loads(x) for x in record.read_text().splitlines()]
    assert [(t["task"], t["count"]) for t in tasks] == [("0", "2"), ("1", "2")]
    argv = tasks[0]["argv"]
    assert argv[:2] == ["labelgen", "run"]
    assert argv[argv.index("--shards") + 1] == "000001-000004"
    assert argv[argv.index("--tasks-per-job") + 1] == "2"
    assert argv[argv.index("--redo") + 1] == "000004"

    # Each task's command, as that array task: together every listed shard once, one teacher
    # load per task, and the column is complete and byte for byte the uninterrupted one.
    loads, labelled = [], []
    real_load, real_label = labelgen.run.load_teacher, labelgen.run.label_shard
    monkeypatch.setattr(
        labelgen.run, "load_teacher", lambda *a, **k: loads.append(1) or real_load(*a, **k)
    )
    monkeypatch.setattr(
        labelgen.run,
        "label_shard",
        lambda job, *a, **k: labelled[-1].append(job.out.stem) or real_label(job, *a, **k),
    )
    for task in tasks:
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task["task"])
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", task["count"])
        labelled.append([])
        out = CliRunner().invoke(app, [*task["argv"][1:], *EXTRA])
        assert out.exit_code == 0, out.output
    # Workers 0 and 2 of 4, then 1 and 3, over the list 000001-000004.
    assert labelled == [["000001", "000003"], ["000002", "000004"]]
    assert len(loads) == 2
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    assert missing(ds, "--teacher", spec_str("dav", ckpt), "--verify").exit_code == 0
    assert column_bytes(ds / "labels" / "dav") == column_bytes(reference / "labels" / "dav")
