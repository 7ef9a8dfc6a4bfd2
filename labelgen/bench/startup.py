"""`pipeline bench labelgen startup`: seconds from `labelgen run` start to its first batch.

A full-size random Depth Anything V2 Large checkpoint (`write_checkpoint(..., "large")`, the
architecture of depth-anything/Depth-Anything-V2-Large-hf, ~1.3 GB of safetensors) labels a
one-image dataset. Each run is a fresh `labelgen run` process on a new column: it resolves the
teacher (locates and hashes the checkpoint), checks the column's identity, loads the model,
starts the loader, and is stopped when the first batch reaches the teacher (`Teacher.predict`),
so the forward itself is not timed. Two figures per run: from the process start (imports
included, as a user sees it) and from the entry of `labelgen.run.run`.

`--baseline DIR` times the code of another source tree (e.g. a `git worktree` of an earlier
commit) in the same invocation, alternating runs with this one, so both see the same machine
load; the medians and their ratio are printed. `--cold` evicts the checkpoint's files from the
page cache before each run (`posix_fadvise(DONTNEED)`), so its bytes come from the disk as on a
cluster node's first read. The child runs `labelgen.cli` of the tree it times, so any tree whose
`labelgen run` has the same flags can be compared.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labelgen.teachers import write_checkpoint
from pipeline.bench.synthetic import synthetic_dataset

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import os, sys, time
import labelgen.run
from labelgen.teachers.base import Teacher

def first_batch(self, images):
    print(f"FIRST_BATCH {time.time():.6f}", flush=True)
    os._exit(0)

real_run = labelgen.run.run
def timed_run(*args, **kwargs):
    print(f"RUN_START {time.time():.6f}", flush=True)
    return real_run(*args, **kwargs)

Teacher.predict = first_batch
labelgen.run.run = timed_run
from labelgen.cli import app
sys.argv = ["labelgen", "run", *sys.argv[1:]]
app()
"""


def evict(directory: Path) -> None:
    """Drop the page-cache pages of every file under `directory` (best effort)."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def one_run(tree: Path, dataset: Path, ckpt: Path, column: str, cold: bool) -> dict[str, float]:
    """Seconds to the first batch of one `labelgen run` process of the code in `tree`."""
    if cold:
        evict(ckpt)
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    args = [f"--dataset={dataset}", f"--teacher={column}=depth-anything-v2:{ckpt}"]
    args += ["--device=cpu", "--workers=0", "--batch-size=1", "--no-progress"]
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=tree, env=env, capture_output=True, text=True
    )
    marks = dict(
        line.split() for line in done.stdout.splitlines() if line.startswith(("FIRST", "RUN"))
    )
    if "FIRST_BATCH" not in marks:
        raise RuntimeError(f"{tree}: no batch reached the teacher:\n{done.stderr[-3000:]}")
    first = float(marks["FIRST_BATCH"])
    return {"from_process_s": first - start, "from_run_s": first - float(marks["RUN_START"])}


def bench_startup(
    workdir: Path, repeats: int, baseline: Path | None, cold: bool, size: str = "large"
) -> dict[str, Any]:
    """Medians over `repeats` runs of this tree (and of `baseline`, alternating)."""
    dataset = synthetic_dataset(workdir, 1, (900, 1200), shards=1)
    ckpt = write_checkpoint("depth-anything-v2", workdir / f"dav2-{size}", size)
    trees = {"this": REPO} | ({"baseline": baseline.resolve()} if baseline else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for i in range(repeats):
        for name, tree in trees.items():
            runs[name].append(one_run(tree, dataset, ckpt, f"{name}-{i}", cold))
    nbytes = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
    result: dict[str, Any] = {"checkpoint_bytes": nbytes, "repeats": repeats, "cold": cold}
    for name, rows in runs.items():
        for key in ("from_process_s", "from_run_s"):
            result[f"{name}_{key}"] = statistics.median(r[key] for r in rows)
            result[f"{name}_{key}_all"] = [round(r[key], 2) for r in rows]
    if baseline:
        for key in ("from_process_s", "from_run_s"):
            result[f"baseline_over_this_{key}"] = result[f"baseline_{key}"] / result[f"this_{key}"]
    return result
