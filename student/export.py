"""`student export` and `student predict`: a run's checkpoint as a Hugging Face directory or an
ONNX model (`student.onnx_export`), each with a model card (`student.card`), and disparity maps
for image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.images.decode import encode_png
from pipeline.toolkit.atomic import follow_umask, publishing, write_bytes
from pipeline.toolkit.colormap import colorize_robust
from student.checkpoint import latest_checkpoint, load_checkpoint, step_of
from student.model import Student, load_student, save_hf, student_from_architecture
from student.rundir import RunDir

FORMATS = ("hf", "onnx")
"""`student export --format`: a Hugging Face directory, or `model.onnx` + `preprocessing.json`."""
SHORT_SIDE = 518
"""The short side `student predict` resizes an image to (keeping its aspect, multiple of 14)."""


def checkpoint_path(run_dir: Path, step: int | None = None) -> Path:
    """The run's checkpoint at `step` (default: the newest); a missing one names what there is."""
    root, run = Path(run_dir), RunDir(Path(run_dir))
    path = latest_checkpoint(root) if step is None else run.checkpoint(step)
    if path is None:
        raise FileNotFoundError(
            f"{root}: no checkpoint yet (the run saves one every `checkpoint_every` steps and "
            "at its end); continue it with `student train --out RUN --resume`"
        )
    if not path.exists():
        have = [p.name for p in run.checkpoint_files()]
        raise FileNotFoundError(f"{path} not found; the run has {have or 'no checkpoint yet'}")
    return path


def load_run_student(run_dir: Path, step: int | None = None) -> tuple[Student, str]:
    """The student of a run at `step` (default: newest checkpoint) and where its image
    processor comes from: the run's `model/` directory, so the init checkpoint is not needed
    (runs without one are built from their init source)."""
    run = RunDir(Path(run_dir))
    config = run.read_config()
    path = checkpoint_path(run.root, step)
    if (run.architecture / "config.json").is_file():
        student, source = student_from_architecture(run.architecture), str(run.architecture)
    else:
        student, source = load_student(config["init"], frozen_encoder=False), config["init"]
    student.model.load_state_dict(load_checkpoint(path)["model"])
    return student.eval(), source


def export_run(
    run_dir: Path,
    out: Path,
    step: int | None = None,
    fmt: str = "hf",
    precision: str = "fp32",
    evals: list[Path] | None = None,
    license_id: str | None = None,
) -> Path:
    """Write the run's student (at `step`, default: newest) to `out` as a Hugging Face
    directory (`fmt="hf"`) or as `model.onnx` + `preprocessing.json` (`fmt="onnx"`, `precision`
    fp32 or fp16), with a model card `README.md` (`student.card.model_card`: `evals` are
    `evaluation run` directories of this model, `license_id` its license). Files get the mode
    the umask gives new files (safetensors writes them 0600)."""
    from student.card import model_card

    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "hf" and precision != "fp32":
        raise ValueError(f"--precision {precision} is for --format onnx; hf writes fp32 weights")
    if fmt == "onnx":
        from student.onnx_export import PRECISIONS, require_onnx

        require_onnx()
        if precision not in PRECISIONS:
            raise ValueError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    trained = step_of(checkpoint_path(run_dir, step))
    card = model_card(run_dir, trained, fmt, precision, evals or [], license_id)
    student, init = load_run_student(run_dir, trained)
    out = Path(out)
    if fmt == "hf":
        save_hf(student, out, processor_source=init)
        for weights in out.glob("*.safetensors"):
            follow_umask(weights)
    else:
        from student.onnx_export import export_onnx, write_preprocessing

        export_onnx(student, out, precision)
        write_preprocessing(out, student, precision)
    write_bytes(out / "README.md", card.encode())
    return out


def input_size(
    h: int, w: int, short: int = SHORT_SIDE, multiple: int = 14, square: bool = False
) -> tuple[int, int]:
    """The student's input size for an `h` x `w` image: short side `short`, aspect kept, both
    sides rounded to a multiple of `multiple` (at least one); `square`: `short` x `short` (the
    families that take only square inputs, as their image processors squash)."""
    if square:
        side = max(multiple, round(short / multiple) * multiple)
        return side, side
    scale = short / min(h, w)
    return tuple(max(multiple, round(n * scale / multiple) * multiple) for n in (h, w))  # type: ignore[return-value]


def load_any(model: Path) -> Student:
    """A run directory (has config.yaml) or a Hugging Face directory / hub id."""
    if (Path(model) / "config.yaml").is_file():
        return load_run_student(model)[0]
    return load_student(model, frozen_encoder=False, who=f"student predict {model}").eval()


@torch.no_grad()  # not inference_mode: a BEiT caches an index a later backward cannot use
def predict_image(student: Student, rgb: np.ndarray, device: str) -> np.ndarray:
    """Disparity `[H, W]` float32 for an RGB uint8 image `[H, W, 3]`, computed at its family's
    processor side (`input_size`) and resized back."""
    h, w = rgb.shape[:2]
    family, config = student.family, student.model.config
    short = family.default_processor_side(config)
    size = input_size(h, w, short, family.multiple, family.square_only(config))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    pred = student(x)["pred"].float()
    return (
        F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    )


def _output_stems(images: list[Path]) -> list[str]:
    """The output name of each image (its file name without suffix); two images that would
    overwrite each other's outputs are a ValueError naming both."""
    seen: dict[str, Path] = {}
    for path in images:
        stem = Path(path).stem
        if stem in seen:
            raise ValueError(
                f"{seen[stem]} and {path} would both be written as {stem}.npy/.png: predict them "
                "into different --out directories"
            )
        seen[stem] = Path(path)
    return list(seen)


def predict_files(model: Path, images: list[Path], out: Path, device: str = "cpu") -> list[Path]:
    """Write `STEM.npy` (disparity, float32, the image's size) and a colour `STEM.png` per image
    into `out`; returns the paths written."""
    stems = _output_stems(images)
    student = load_any(model).to(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, stem in zip(images, stems, strict=True):
        try:
            rgb = np.array(Image.open(path).convert("RGB"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the image ({e})") from e
        disparity = predict_image(student, rgb, device)
        with publishing(out / f"{stem}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, disparity.astype(np.float32))
        write_bytes(out / f"{stem}.png", encode_png(colorize_robust(disparity)))
        written += [out / f"{stem}.npy", out / f"{stem}.png"]
    return written
