"""How the world study runs its steps: each a command a user runs, in its own process
(`python -m STAGE.cli ...`), logged to `OUT/commands.log`, independent ones a few at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class Commands:
    """Runs commands for a study in `out` with `threads` torch threads each, `jobs` at a time."""

    def __init__(self, out: Path, jobs: int, threads: int) -> None:
        self.out, self.jobs, self.threads = Path(out), jobs, threads
        self.log = self.out / "commands.log"

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def run(self, step: str, args: list[str], done: Path | None = None) -> None:
        """Run `python -m <stage>.cli ARGS` unless `done` exists; its output goes to the log."""
        if done is not None and done.exists():
            return
        stage, *rest = args
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "OMP_NUM_THREADS": str(self.threads)}
        start = time.perf_counter()
        done_proc = subprocess.run(
            [sys.executable, "-m", f"{stage}.cli", *rest], capture_output=True, text=True, env=env
        )
        seconds = time.perf_counter() - start
        with self.log.open("a") as log:
            log.write(f"[{step}] $ {stage} {' '.join(rest)}\n{done_proc.stdout}{done_proc.stderr}")
        print(f"[{step}] {stage} {rest[0]} ({seconds:.0f} s)", flush=True)
        if done_proc.returncode != 0:
            tail = "\n".join(done_proc.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"[{step}] `{stage} {' '.join(rest)}` failed:\n{tail}")

    def parallel(self, tasks: list) -> None:
        """Run independent zero-argument callables `jobs` at a time; the first error stops the
        ones not started yet and is raised once the running ones end."""
        with ThreadPoolExecutor(self.jobs) as pool:
            futures = [pool.submit(task) for task in tasks]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise


def flags(**values: object) -> list[str]:
    """`--name value` pairs (underscores in names become dashes)."""
    out: list[str] = []
    for name, value in values.items():
        out += [f"--{name.replace('_', '-')}", str(value)]
    return out
