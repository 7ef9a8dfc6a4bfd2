"""Every GPU figure the project lacks, in one folder: labelgen, training, reduced world studies.

    pipeline bench gpu --out DIR [--budget-s 540]    # on a CUDA machine
    pipeline bench gpu --out DIR --smoke             # the same orchestration on CPU, tiny sizes

Parts, in order of value, each one benchmark run as `python -m MODULE` in its own process (so
`pipeline` imports no stage), its stdout and stderr in DIR/logs/PART.log:

1. labelgen: `pipeline bench labelgen gpu`, per teacher the labelgen views/s against the bare
   forward and the FLOP floor;
2. train: `pipeline bench train --size small --size large`, the Depth Anything V2 students'
   training step with its loader stall and peak memory;
3. world: `pipeline bench world --scale gpu-quick --seeds 2 --rows table2 --jobs 1`, Table 2's
   four rows (DIR/world is the study directory);
4. families: `pipeline bench train --student dpt-large --student beit-base-384 --student
   swinv2-tiny-256 --steps 10`, the other student families' step, loader stall and measured peak
   memory (`peak_gib`, against `pipeline bench memory`'s computed figure).
5. world-metric: `pipeline bench world-metric --scale gpu-quick --seeds 2 --jobs 1`, a metric
   teacher distilled into metric students learning canonical depth and raw metres (the negative
   control), scored metric (DIR/world-metric is the study directory).

A finished part leaves DIR/PART.json (its rows, wall time, command) and DIR/PART.md (its table),
both written atomically; a part whose PART.md exists is skipped, so the same command resumes an
interrupted run. `--budget-s` is the wall time this command may take: a part is not started when
the time left is smaller than its expected time (EXPECTED_S, rough estimates), except the world
study, which resumes by itself step by step and so starts whenever MIN_SLICE_S is left; a part
still running when the budget ends is stopped and runs again next time. DIR/REPORT.md (machine,
date, command, every finished part's table) is rewritten at the end, ready for BENCHMARKS.md.

Exit status: 0 every part done; 3 parts left (listed; the same command resumes them); 1 a part
failed (its log's tail is printed); 2 no CUDA device without --smoke.

On the lent GPU machine (no network, so no `pip install -e .`): copy the wheels that
`docker/gpu_wheels.sh WHEELS` downloads, install them with `python3 -m pip install -q --no-index
--no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site WHEELS/*.whl`, then from the
repository root run `PYTHONPATH=/tmp/site:. python3 -m pipeline.cli bench gpu --out OUT`; the
benchmarks run as `python -m` subprocesses in the same directory and inherit PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.bench import BENCHMARKS
from pipeline.bench import parser as bench_parser
from pipeline.toolkit.atomic import write_bytes, write_json
from pipeline.toolkit.cpus import usable_cpus

EXPECTED_S = {
    "labelgen": (240, 90),
    "train": (180, 30),
    "world": (300, 270),
    "families": (240, 45),
    "world-metric": (300, 80),
}
"""Rough wall seconds per part: (on one H100/H200, --smoke on a 2-core CPU VM). Estimates, not
measurements: the GPU ones from the FLOP counts and the data each benchmark builds on the CPU
(SA-1B-size synthetic images, random full-size checkpoints; the world study's `gpu-quick` scale:
rendering on the CPU, two small teachers and eight students trained, evaluations on the GPU); the
smoke ones measured once."""
MIN_SLICE_S = 60
"""The least time left for which the world study (resumable step by step) is started."""
EXIT_LEFT, EXIT_FAILED, EXIT_NO_CUDA = 3, 1, 2
NO_CUDA = "pipeline bench gpu: no CUDA device here; use --smoke to check it on CPU"


@dataclass(frozen=True)
class Part:
    """One benchmark run of `pipeline bench gpu`."""

    name: str
    bench: str
    """The `pipeline bench` name it runs."""
    args: tuple[str, ...]
    smoke_args: tuple[str, ...]
    resumable: bool = False
    """Keeps its finished steps when stopped: started whenever MIN_SLICE_S is left."""
    finished: tuple[int, ...] = (0,)
    """Exit statuses of a run that finished with a result (the world study's 3: a report whose
    teachers do not clear the bar over the prior, so it draws no conclusion)."""
    study: bool = False
    """A world study: its result is the report it names in its last `report: PATH` line."""
    workdir: bool = True
    """Takes `--workdir`: its temporary files go in DIR/work/NAME, removed before and after (a
    stopped benchmark cannot clean up after itself)."""

    def command(self, out: Path, smoke: bool) -> list[str]:
        """Arguments after `pipeline bench NAME`; `{out}` stands for the output folder."""
        args = [a.format(out=out) for a in (self.smoke_args if smoke else self.args)]
        return [*args, "--workdir", str(self.scratch(out))] if self.workdir else args

    def scratch(self, out: Path) -> Path:
        return out / "work" / self.name

    def expected_s(self, smoke: bool) -> float:
        return EXPECTED_S[self.name][1 if smoke else 0]


WORLD = ("--out", "{out}/world", "--rows", "table2", "--jobs", "1")
METRIC = ("--out", "{out}/world-metric", "--jobs", "1")
FAMILIES = ("--student", "dpt-large", "--student", "beit-base-384", "--student", "swinv2-tiny-256")
PARTS = (
    Part("labelgen", "labelgen", ("gpu",), ("gpu", "--smoke")),
    Part("train", "train", ("--size", "small", "--size", "large"), ("--smoke",)),
    Part("world", "world", (*WORLD, "--scale", "gpu-quick", "--seeds", "2"),
         (*WORLD, "--scale", "smoke", "--seeds", "1"), resumable=True, finished=(0, 3),
         study=True, workdir=False),
    Part("families", "train", (*FAMILIES, "--steps", "10"),
         ("--smoke", "--student", "beit-tiny", "--student", "swinv2-tiny")),
    Part("world-metric", "world-metric", (*METRIC, "--scale", "gpu-quick", "--seeds", "2"),
         (*METRIC, "--scale", "smoke", "--seeds", "1"), resumable=True, finished=(0, 3),
         study=True, workdir=False),
)  # fmt: skip
"""In order of value: the parts run in this order."""

PROBE = """
import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({"cuda": cuda, "torch": torch.__version__,
                  "device": torch.cuda.get_device_name(0) if cuda else "cpu"}))
"""


def probe_machine() -> dict[str, Any]:
    """CUDA availability, device name and torch version, from a tiny subprocess."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    if done.returncode != 0:
        return {"cuda": False, "torch": "?", "device": f"unknown ({done.stderr.strip()[-200:]})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(argv: list[str], log: Path, timeout: float, env: dict[str, str]) -> int | None:
    """Run `argv` in its own process group, stdout and stderr appended to `log`; its exit status, or
    None when it was stopped at `timeout` seconds (the whole group: a benchmark's children too)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:  # appended: a resumed part keeps its earlier runs' output
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        proc = subprocess.Popen(argv, stdout=f, stderr=f, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=max(timeout, 0.1))
        except subprocess.TimeoutExpired:
            _stop(proc)
            return None
        except BaseException:
            _stop(proc)
            raise


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            proc.wait()
            return


def last_json(text: str) -> Any:
    """The JSON document a benchmark printed last: from the last line that opens one."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] in ("[", "{") or lines[i].startswith(("[{", '{"')):
            try:
                return json.JSONDecoder().raw_decode("\n".join(lines[i:]))[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON in the benchmark's output")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows of one benchmark as a Markdown table, its keys (first row's order) as the header."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def world_report(log_text: str, out: Path) -> tuple[list[dict[str, Any]], str]:
    """A world study's report (its last `report: PATH` line), its headings one level down."""
    lines = [x for x in log_text.splitlines() if x.startswith("report: ")]
    if not lines:
        raise ValueError("the world study printed no `report: PATH` line")
    path = Path(lines[-1][len("report: ") :].strip())
    text = path.read_text()
    text = "\n".join("##" + x if x.startswith("#") else x for x in text.splitlines())
    where = path.parent.relative_to(out) if path.is_relative_to(out) else path.parent
    return [{"report": str(path)}], f"(figures and `evaluation.md` in `{where}/`)\n\n{text}\n"


def part_paths(out: Path, part: Part) -> tuple[Path, Path, Path]:
    """Its result (Markdown, the 'done' mark), its rows (JSON) and its log."""
    return out / f"{part.name}.md", out / f"{part.name}.json", out / "logs" / f"{part.name}.log"


def run_part(part: Part, out: Path, smoke: bool, timeout: float) -> str:
    """Run one part; write its results when it finishes. 'done', 'stopped' or 'failed'."""
    md, js, log = part_paths(out, part)
    args = part.command(out, smoke)
    env = dict(os.environ)
    if smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the sub-benchmarks' smoke modes, on CPU
    argv = [sys.executable, "-m", BENCHMARKS[part.bench].module, *args]
    scratch = part.scratch(out)
    shutil.rmtree(scratch, ignore_errors=True)
    if part.workdir:
        scratch.mkdir(parents=True)
    start = time.perf_counter()
    try:
        rc = run_command(argv, log, timeout, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            scratch.parent.rmdir()  # DIR/work, once empty
    seconds = time.perf_counter() - start
    if rc is None:
        return "stopped"
    if rc not in part.finished:
        return "failed"
    text = log.read_text()
    try:
        if part.study:
            rows, body = world_report(text, out)
        else:
            rows = last_json(text)
            rows = rows if isinstance(rows, list) else [rows]
            body = markdown_table(rows)
    except (ValueError, OSError) as e:
        with log.open("a") as f:
            f.write(f"\npipeline bench gpu: cannot read the result: {e}\n")
        return "failed"
    command = f"pipeline bench {part.bench} {shlex.join(args)}"
    finished = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    about = {"command": command, "exit": rc, "wall_s": seconds, "finished": finished}
    write_json(js, {**about, "rows": rows})
    status = f" (exit {rc})" if rc else ""
    head = f"## {part.name}\n\n`{command}`{status}: {seconds:.0f} s wall, finished {finished}.\n\n"
    write_bytes(md, (head + body).encode())
    return "done"


def write_summary(out: Path, machine: dict[str, Any], command: str, left: list[str]) -> Path:
    """DIR/REPORT.md: machine, date, command and every finished part's table."""
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    text = [
        "# GPU benchmarks",
        "",
        f"- Machine: {machine['device']}, {usable_cpus()} usable CPUs, torch {machine['torch']}.",
        f"- Date: {date}. Command: `{command}` (resumable: finished parts are kept).",
    ]
    if left:
        text.append(f"- Not finished: {', '.join(left)} (the same command resumes them).")
    text.append("")
    for part in PARTS:
        md = part_paths(out, part)[0]
        if md.is_file():
            text += [md.read_text().rstrip(), ""]
    path = out / "REPORT.md"
    write_bytes(path, "\n".join(text).encode())
    return path


def _say(message: str) -> None:
    print(f"[gpu] {message}", flush=True)


def _tail(log: Path, n: int = 15) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    return "\n".join("    " + x for x in lines[-n:])


def run_all(out: Path, smoke: bool, budget_s: float, command: str, machine: dict) -> int:
    """Every part not finished yet, within `budget_s`; the exit status (module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + budget_s
    left, failed = [], []
    for part in PARTS:
        md, _, log = part_paths(out, part)
        if md.is_file():
            _say(f"{part.name}: skipped ({md} exists)")
            continue
        remaining, expected = deadline - time.monotonic(), part.expected_s(smoke)
        if remaining < (min(MIN_SLICE_S, expected) if part.resumable else expected):
            _say(f"{part.name}: not started ({remaining:.0f} s left, expects ~{expected:.0f} s)")
            left.append(part.name)
            continue
        _say(f"{part.name}: started (expects ~{expected:.0f} s; log {log})")
        start = time.perf_counter()
        status = run_part(part, out, smoke, remaining)
        _say(f"{part.name}: {status} in {time.perf_counter() - start:.0f} s")
        if status == "stopped":
            left.append(part.name)
        elif status == "failed":
            failed.append(part.name)
            print(_tail(log), flush=True)
    report = write_summary(out, machine, command, left + failed)
    _say(f"report: {report}")
    if left:
        _say(f"left: {', '.join(left)}; run the same command again to resume them")
    if failed:
        _say(f"failed: {', '.join(failed)} (logs in {out / 'logs'})")
        return EXIT_FAILED
    return EXIT_LEFT if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__name__, __doc__)
    parser.add_argument("--out", type=Path, required=True, help="results folder (resumable)")
    parser.add_argument("--smoke", action="store_true", help="every part on CPU, tiny settings")
    parser.add_argument(
        "--budget-s", type=float, default=540, help="wall seconds this command may take"
    )
    args = parser.parse_args(argv)
    machine = probe_machine()
    if not args.smoke and not machine["cuda"]:
        print(NO_CUDA, file=sys.stderr)
        return EXIT_NO_CUDA
    if args.smoke:
        machine = {**machine, "device": "CPU (--smoke: tiny settings, not GPU figures)"}
    argv = sys.argv[1:] if argv is None else argv
    command = f"pipeline bench gpu {shlex.join(argv)}"
    return run_all(args.out, args.smoke, args.budget_s, command, machine)


if __name__ == "__main__":
    sys.exit(main())
