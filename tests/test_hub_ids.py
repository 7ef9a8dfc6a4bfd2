"""Every command that takes a checkpoint by hub id, run as a user's job would run it: in a fresh
process with an empty Hugging Face cache (`HF_HOME`) and `HF_ENDPOINT` pointed at the loopback hub
(`hub_server`), which serves a tiny Depth Anything V2 as `org/tiny-dav2` and records every
request. The first run downloads it; a rerun reads the cache (no file downloaded again); an
offline rerun (`HF_HUB_OFFLINE=1`) works from the cache; offline with an empty cache, each
command says in one line which hub id is missing and what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dataset_helpers import LAUNCHER_VARIABLES, prepare_small, scene_image, write_fake_column
from hub_server import HubServer, hub_server
from PIL import Image

from labelgen.run import run as run_labels
from labelgen.settings import RunSettings
from labelgen.teachers import parse_teacher_spec, write_tiny_checkpoint
from labelgen.teachers.source import weights_sha256
from pipeline.toolkit.launch import Launch

REPO = "org/tiny-dav2"
FILES = ["config.json", "model.safetensors", "preprocessor_config.json"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The loopback hub serving a tiny Depth Anything V2 checkpoint (also returned) as REPO,
    with files no loader reads beside it (they are not downloaded)."""
    ckpt = write_tiny_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("hub") / "ckpt")
    (ckpt / "README.md").write_text("# tiny\n")
    (ckpt / "model.fp16.safetensors").write_bytes(b"a precision variant")
    (ckpt / "onnx").mkdir()
    (ckpt / "onnx" / "model.onnx").write_bytes(b"an exported model")
    with hub_server({REPO: ckpt}) as server:
        yield server, ckpt


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i, (h, w) in enumerate([(300, 420), (280, 280)]):
        Image.fromarray(scene_image(h, w, i)).save(folder / f"img{i}.jpg", quality=90)
    return folder


def cli(server: HubServer, home: Path, *args: str, offline: bool = False):
    """`python -m <command>.cli ARGS` with the hub at `server`, the cache in `home`."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    flag = "1" if offline else "0"
    env.update(
        HF_ENDPOINT=server.endpoint,
        HF_HOME=str(home),
        HF_HUB_OFFLINE=flag,
        TRANSFORMERS_OFFLINE=flag,
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", f"{command}.cli", *rest],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def downloads(server: HubServer) -> list[str]:
    """The files of REPO downloaded so far (GET), in request order."""
    prefix = f"GET /{REPO}/resolve/"
    return [r[len(prefix) :].split("/", 1)[1] for r in server.requests if r.startswith(prefix)]


def assert_one_line_offline(done, who: str) -> None:
    """Exit status 2 and one `error:` line that names `who`, the hub id and what to do."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: {who}: hub id '{REPO}' is not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE=1" in errors[0]
    assert f"`hf download {REPO}`" in errors[0] and "give a local directory" in errors[0]


def test_labelgen_downloads_a_hub_teacher_once_then_runs_from_the_cache(hub, photos, tmp_path):
    server, ckpt = hub
    dataset = tmp_path / "ds"
    prepare_small(photos, dataset, shard_size=1)
    home = tmp_path / "hf"
    run = ["labelgen", "run", "--dataset", str(dataset), "--workers", "0", "--no-progress"]
    teacher = f"d=depth-anything-v2:{REPO},full_size=140"

    first = cli(server, home, *run, "--teacher", teacher)
    assert first.returncode == 0, first.stderr
    assert "d: labelled 2 shards" in first.stdout
    assert sorted(downloads(server)) == FILES
    header = json.loads((dataset / "labels" / "d" / "manifest.json").read_text())
    # The identity is the content of the files: the same as for them as a local directory.
    assert header["weights"]["sha256"] == weights_sha256(str(ckpt))
    assert header["weights"]["source"] == REPO and len(header["weights"]["commit"]) == 40
    local = parse_teacher_spec(f"d=depth-anything-v2:{ckpt},full_size=140")
    launch = Launch(workers=0, progress=False)
    (same,) = run_labels(dataset, [local], RunSettings(), env={}, launch=launch)
    assert same.shards_skipped == 2 and not same.shards_done  # done for the local directory too

    again = cli(server, home, *run, "--teacher", teacher)
    assert again.returncode == 0 and "d: nothing to do" in again.stdout, again.stderr
    assert sorted(downloads(server)) == FILES  # read from the cache

    asked = len(server.requests)
    offline = cli(server, home, *run, "--teacher", teacher.replace("d=", "e="), offline=True)
    assert offline.returncode == 0 and "e: labelled 2 shards" in offline.stdout, offline.stderr
    assert len(server.requests) == asked  # offline: the hub is never asked

    empty = tmp_path / "empty"
    assert_one_line_offline(
        cli(server, empty, *run, "--teacher", teacher, offline=True), "teacher 'd'"
    )
    estimate = ["labelgen", "estimate", "--dataset", str(dataset), "--teacher", teacher]
    assert_one_line_offline(cli(server, empty, *estimate, offline=True), "teacher 'd'")


def test_student_train_init_and_predict_by_hub_id(hub, photos, tmp_path):
    server, _ = hub
    dataset = prepare_small(photos, tmp_path / "ds", shard_size=1)
    write_fake_column(dataset, "alpha")
    home, before = tmp_path / "hf", len(downloads(server))
    run = tmp_path / "run"
    fast = [
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--set",
        "data.size=112",
        "--set",
        "data.workers=0",
    ]
    train = ["student", "train", "--dataset", str(dataset), "--teacher", "alpha", "--init", REPO]
    done = cli(server, home, *train, "--out", str(run), *fast)
    assert done.returncode == 0, done.stderr
    assert sorted(downloads(server)[before:]) == FILES
    assert yaml.safe_load((run / "config.yaml").read_text())["init"] == REPO
    assert (run / "model" / "config.json").is_file()

    image = next(photos.glob("*.jpg"))
    predict = ["student", "predict", REPO, str(image), "--out", str(tmp_path / "preds")]
    predicted = cli(server, home, *predict, offline=True)  # from the cache train filled
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "preds" / f"{image.stem}.npy").is_file()
    assert sorted(downloads(server)[before:]) == FILES

    empty = tmp_path / "empty"
    other = tmp_path / "run2"
    assert_one_line_offline(
        cli(server, empty, *train, "--out", str(other), *fast, offline=True), "--init"
    )
    assert not other.exists()  # refused before the run directory is written
    assert_one_line_offline(cli(server, empty, *predict, offline=True), f"student predict {REPO}")


def test_evaluation_run_model_by_hub_id(hub, tmp_path):
    server, _ = hub
    home, before = tmp_path / "hf", len(downloads(server))
    out = tmp_path / "eval"
    run = ["evaluation", "run", "--model", REPO, "--dataset", "middlebury", "--workers", "0"]
    done = cli(server, home, *run, "--out", str(out), "--processing-res", "140")
    assert done.returncode == 0, done.stderr
    assert sorted(downloads(server)[before:]) == FILES
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["model"]["spec"] == REPO
    assert_one_line_offline(
        cli(server, tmp_path / "empty", *run, "--out", str(tmp_path / "e2"), offline=True),
        f"--model {REPO}",
    )
