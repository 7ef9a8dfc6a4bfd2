"""Students of every family (`student.families`): each trains on labels of a tiny teacher of
another family, resumes, exports to a Hugging Face directory whose model is the trained one (the
`transformers` pipeline's model on the processor's pixels equals the student's forward),
`student predict` agrees with the pipeline and `evaluation run --model RUN` scores it; under
torchrun with two processes too.

The checkpoints are tiny random models of the real architectures, saved with `save_pretrained`
and loaded with `from_pretrained` as a user's would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import prepare_small, write_photos
from PIL import Image
from train_helpers import read_metrics, runner

from evaluation.cli import app as evaluation_app
from labelgen.cli import app as labelgen_app
from labelgen.teachers import write_checkpoint, write_tiny_checkpoint
from student.cli import app
from student.families import FAMILIES, family_of

FAMILY_CHECKPOINTS = {  # family -> (adapter, size) of its tiny checkpoint
    "depth-anything": ("depth-anything-v2", "tiny"),
    "dpt": ("dpt", "tiny"),
    "dpt-hybrid": ("dpt", "tiny-hybrid"),
    "beit": ("dpt", "tiny-beit"),
    "swinv2": ("dpt", "tiny-swinv2"),
}
FAST = ["--set", "data.size=112", "--set", "data.workers=0", "--set", "log_every=1"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A 5-image dataset labelled by a tiny Depth Anything (`da`) and a tiny Swin V2 DPT
    (`swin`): every student learns from a teacher of another family."""
    root = tmp_path_factory.mktemp("families")
    dataset = prepare_small(write_photos(root / "photos"), root / "ds", shard_size=3)
    teachers = {
        "da": f"da=depth-anything-v2:{write_tiny_checkpoint('depth-anything-v2', root / 'da')}",
        "swin": f"swin=dpt:{write_checkpoint('dpt', root / 'swin', 'tiny-swinv2')}",
    }
    for spec in teachers.values():
        args = ["run", "--dataset", str(dataset), "--teacher", spec, "--device", "cpu"]
        done = runner.invoke(labelgen_app, [*args, "--workers", "0", "--no-progress"])
        assert done.exit_code == 0, done.output
    return dataset


def init_of(family: str, root: Path) -> tuple[Path, str]:
    """A tiny checkpoint of `family` and the teacher column of another family."""
    adapter, size = FAMILY_CHECKPOINTS[family]
    return write_checkpoint(adapter, root / f"init-{family}", size), (
        "swin" if family == "depth-anything" else "da"
    )


def test_every_family_is_recognised_from_its_config(tmp_path):
    from transformers import AutoConfig

    for family, (adapter, size) in FAMILY_CHECKPOINTS.items():
        config = AutoConfig.from_pretrained(write_checkpoint(adapter, tmp_path / family, size))
        assert family_of(config).name == family.removesuffix("-hybrid")
    assert set(FAMILIES.names()) == {"depth-anything", "dpt", "beit", "swinv2"}


@pytest.mark.parametrize("family", list(FAMILY_CHECKPOINTS))
def test_a_student_of_each_family_trains_resumes_exports_and_predicts(family, labelled, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation, pipeline

    from student.model import load_student

    init, column = init_of(family, tmp_path)
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--dataset", str(labelled), "--teacher", column]
    done = runner.invoke(app, [*args, "--init", str(init), "--steps", "2", *FAST])
    assert done.exit_code == 0, done.output
    again = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "3"])
    assert again.exit_code == 0, again.output
    metrics = read_metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(np.isfinite(m["loss"]) and m["teacher"] == [column] for m in metrics)

    evaluated = tmp_path / "eval"
    args = ["run", "--model", str(run), "--dataset", "middlebury", "--out", str(evaluated)]
    scored = runner.invoke(evaluation_app, [*args, "--device", "cpu", "--workers", "0"])
    assert scored.exit_code == 0, scored.output
    summary = json.loads((evaluated / "summary.json").read_text())
    assert np.isfinite(summary["datasets"]["middlebury"]["abs_rel"])
    midas_v31 = family in ("beit", "swinv2")  # trained on NYUv2 and KITTI: not zero-shot there
    assert summary["model"].get("trained_on") == (["nyu", "kitti"] if midas_v31 else None)

    hf = tmp_path / "hf"
    exported = runner.invoke(app, ["export", str(run), "--out", str(hf)])
    assert exported.exit_code == 0, exported.output
    card = (hf / "README.md").read_text()
    assert ("Not zero-shot on NYUv2 and KITTI" in card) is midas_v31
    from_export = tmp_path / "eval-export"
    args = ["run", "--model", str(hf), "--dataset", "middlebury", "--out", str(from_export)]
    scored = runner.invoke(evaluation_app, [*args, "--device", "cpu", "--workers", "0"])
    assert scored.exit_code == 0, scored.output
    export_summary = json.loads((from_export / "summary.json").read_text())
    assert export_summary["datasets"]["middlebury"]["abs_rel"] == pytest.approx(
        summary["datasets"]["middlebury"]["abs_rel"], rel=1e-4
    )  # the export is the run's last checkpoint
    assert export_summary["model"].get("trained_on") == summary["model"].get("trained_on")
    photo = sorted((labelled.parent / "photos").glob("*.jpg"))[1]
    image = Image.open(photo).convert("RGB")
    processor = AutoImageProcessor.from_pretrained(hf)
    pixels = processor(image, return_tensors="pt").pixel_values
    model = AutoModelForDepthEstimation.from_pretrained(hf).eval()
    student = load_student(hf, frozen_encoder=False).eval()
    with torch.no_grad():
        reference = model(pixel_values=pixels).predicted_depth
        rgb = pixels * student.std + student.mean  # the processor's pixels, in [0, 1]
        ours = student(rgb)["pred"][:, 0]
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max())

    out = tmp_path / "pred"
    predicted = runner.invoke(app, ["predict", str(hf), str(photo), "--out", str(out)])
    assert predicted.exit_code == 0, predicted.output
    ours = np.load(out / f"{photo.stem}.npy")
    theirs = pipeline("depth-estimation", model=str(hf))(image)["predicted_depth"]
    theirs = torch.nn.functional.interpolate(
        theirs.reshape(1, 1, *theirs.shape[-2:]).float(), size=ours.shape, mode="bilinear"
    )[0, 0].numpy()
    assert ours.shape == image.size[::-1] and np.isfinite(ours).all()
    # the same model on the same image; only the resampling of the input differs
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.95


TORCHRUN = [
    "dpt",
    *[pytest.param(f, marks=pytest.mark.slow) for f in ("depth-anything", "beit", "swinv2")],
    pytest.param("dpt-hybrid", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("family", TORCHRUN)
def test_a_student_of_each_family_trains_under_torchrun_with_two_processes(
    family, labelled, tmp_path
):
    """DDP (gloo) with two ranks: unused parameters are frozen, so DDP accepts every family."""
    init, column = init_of(family, tmp_path)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "student.cli", "train", "--out", str(run), "--dataset", str(labelled)]
    cmd += ["--teacher", column, "--init", str(init), "--steps", "2", "--batch-size", "1", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run)] == [1, 2]
    cmd = [*cmd[: cmd.index("--dataset")], "--resume", "--steps", "3"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["step"] for m in read_metrics(run)] == [1, 2, 3]


@pytest.mark.parametrize("family", list(FAMILY_CHECKPOINTS))
def test_a_student_of_each_family_steps_under_bf16_autocast(family, tmp_path):
    """What a GPU run in bf16 does, on the CPU's bf16 autocast: the forward and the backward
    of every family stay finite and close to fp32 (a CPU run of `student train` is fp32)."""
    from student.model import load_student

    init, _ = init_of(family, tmp_path)
    student = load_student(init)
    student.side = student.family.side(student.model.config, 112)
    student.freeze_unused()
    images = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = student(images)["pred"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = student(images)
    pred = out["pred"].float()
    (pred.mean() + out["tokens"].float().pow(2).mean()).backward()
    assert torch.isfinite(pred).all()
    assert np.corrcoef(pred.detach().ravel(), reference.ravel())[0, 1] > 0.99
    grads = [p.grad for p in student.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
