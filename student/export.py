"""`student export` and `student predict`: a run's checkpoint as a Hugging Face directory or an
ONNX model (`student.onnx_export`), each with a model card (`student.card`) and `export.json`
(`student.export_record`), and disparity maps for image files (from a run, a Hugging Face
directory or an ONNX export). A metric run exports as a metric Depth Anything checkpoint and
predicts metres (`student.export_metric`).

An export is written into a temporary directory next to `--out` and renamed into place when
complete, so `--out` never holds a partial export; what a killed export left there is removed by
the next one. A non-empty `--out` that is not an export of the same run is refused unless
`--overwrite`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.images.decode import encode_png
from pipeline.model.depth_anything import canonical_focal, is_metric
from pipeline.toolkit.atomic import (
    follow_umask,
    publishing,
    publishing_dir,
    read_json,
    write_bytes,
    write_json,
)
from pipeline.toolkit.colormap import colorize_robust
from pipeline.toolkit.faults import is_disk_full
from student.checkpoint import latest_checkpoint, load_checkpoint, step_of
from student.ema import averaged_weights
from student.export_metric import (
    focal_line,
    image_focal,
    metres,
    metric_fields,
    with_metric_head,
)
from student.export_record import EXPORT_FILE, check_out, export_record
from student.model import Student, load_student, save_hf, student_from_architecture
from student.onnx_export import MODEL_FILE, PREPROCESSING_FILE
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
    (runs without one are built from their init source). A metric run's student has the metric
    head and its config the fields its export records (`student.export_metric`)."""
    run = RunDir(Path(run_dir))
    config = run.read_config()
    path = checkpoint_path(run.root, step)
    if (run.architecture / "config.json").is_file():
        student, source = student_from_architecture(run.architecture), str(run.architecture)
    else:
        student, source = load_student(config["init"], frozen_encoder=False), config["init"]
    fields = metric_fields(config)
    if fields is not None:
        student = with_metric_head(student, fields)
    student.model.load_state_dict(averaged_weights(load_checkpoint(path)))
    return student.eval(), source


def export_run(
    run_dir: Path,
    out: Path,
    step: int | None = None,
    fmt: str = "hf",
    precision: str = "fp32",
    evals: list[Path] | None = None,
    license_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run's student (at `step`, default: newest) to `out` as a Hugging Face
    directory (`fmt="hf"`) or as `model.onnx` + `preprocessing.json` (`fmt="onnx"`, `precision`
    fp32 or fp16), with a model card `README.md` (`student.card.model_card`: `evals` are
    `evaluation run` directories of this model, `license_id` its license) and `export.json`.

    Published atomically (see the module); a non-empty `out` that is not an export of this run
    is refused unless `overwrite`. Files get the mode the umask gives new files (safetensors
    writes them 0600). A full disk is an `OSError(ENOSPC)` naming `out` and the fix."""
    from student.card import model_card

    if fmt == "onnx" and metric_fields(RunDir(Path(run_dir)).read_config()) is not None:
        raise ValueError(
            f"{run_dir} is a metric student (student.output: metric in its config.yaml): its ONNX "
            "export would lose the focal-length scaling; export it with --format hf"
        )
    _check_format(fmt, precision)
    out = Path(out)
    check_out(out, run_dir, overwrite)
    trained = step_of(checkpoint_path(run_dir, step))
    card = model_card(run_dir, trained, fmt, precision, evals or [], license_id)
    student, init = load_run_student(run_dir, trained)
    try:
        with publishing_dir(out) as tmp:
            _write_model(student, init, tmp, fmt, precision)
            write_bytes(tmp / "README.md", card.encode())
            write_json(tmp / EXPORT_FILE, export_record(run_dir, trained, fmt, precision))
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise OSError(
            errno.ENOSPC,
            f"no space left on the device of {out.parent} for the export (nothing was written "
            "to --out): free space there or choose another --out",
            str(out),
        ) from e
    return out


def _check_format(fmt: str, precision: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "hf" and precision != "fp32":
        raise ValueError(f"--precision {precision} is for --format onnx; hf writes fp32 weights")
    if fmt == "onnx":
        from student.onnx_export import PRECISIONS, require_onnx

        require_onnx()
        if precision not in PRECISIONS:
            raise ValueError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def _write_model(student: Student, init: str, out: Path, fmt: str, precision: str) -> None:
    if fmt == "hf":
        save_hf(student, out, processor_source=init)
        for weights in out.glob("*.safetensors"):
            follow_umask(weights)
    else:
        from student.onnx_export import export_onnx, write_preprocessing

        export_onnx(student, out, precision)
        write_preprocessing(out, student, precision)


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
    size = student_input_size(student, *rgb.shape[:2])
    return _predict_at(lambda x: student(x)["pred"], rgb, size, device)


def student_input_size(student: Student, h: int, w: int) -> tuple[int, int]:
    """The size `predict_image` runs `student` at for an `h` x `w` image."""
    family, config = student.family, student.model.config
    short = family.default_processor_side(config)
    return input_size(h, w, short, family.multiple, family.square_only(config))


def _predict_at(
    forward: Callable[[torch.Tensor], torch.Tensor],
    rgb: np.ndarray,
    size: tuple[int, int],
    device: str,
) -> np.ndarray:
    """`forward` of the image resized to `size` (bilinear, antialiased), resized back."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).to(device)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    pred = forward(x).float()
    return (
        F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
    )


def is_onnx_export(model: Path) -> bool:
    return (Path(model) / MODEL_FILE).is_file()


class OnnxExport:
    """An ONNX export (`student export --format onnx`) run by ONNX Runtime on the CPU, fed as
    its `preprocessing.json` says: what `student predict` does with one."""

    def __init__(self, directory: Path) -> None:
        from student.onnx_export import onnx_session, session_rule

        spec = Path(directory) / PREPROCESSING_FILE
        if not spec.is_file():
            raise FileNotFoundError(
                f"{spec} not found: {directory} is an incomplete ONNX export; export it again "
                "with `student export RUN --format onnx --out DIR`"
            )
        resize = read_json(spec).get("resize", {})
        self.short = int(resize.get("short_side", SHORT_SIDE))
        self.square = bool(resize.get("square", False))
        self.session = onnx_session(directory)
        self.rule = session_rule(self.session)

    def size(self, h: int, w: int) -> tuple[int, int]:
        """The input size of an `h` x `w` image (the export's fixed side, or `input_size`)."""
        if self.rule.fixed is not None:
            return self.rule.fixed, self.rule.fixed
        return input_size(h, w, self.short, self.rule.multiple, self.square)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from student.onnx_export import run_onnx

        return torch.from_numpy(run_onnx(self.session, x.cpu().numpy()))

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Disparity `[H, W]` float32 of an RGB uint8 image, as `predict_image`."""
        return _predict_at(self, rgb, self.size(*rgb.shape[:2]), "cpu")


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


def predict_files(
    model: Path,
    images: list[Path],
    out: Path,
    device: str = "cpu",
    done: Callable[[Path], None] | None = None,
    focal_px: float | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write `STEM.npy` (float32, the image's size: disparity, or a metric student's depth in
    metres) and a colour `STEM.png` per image into `out`, calling `done(image)` after each;
    returns the paths written.

    A metric student's canonical depth is scaled by each image's focal length (`focal_px`, pixels
    of the image, else its EXIF, else the canonical camera: `student.export_metric`); `say` is
    told, per image, which one it used, or once that `focal_px` is ignored (a relative model, or
    a metric one blind to the camera)."""
    say = say or (lambda _: None)
    if focal_px is not None and not focal_px > 0:
        raise ValueError(f"--focal-px {focal_px}: a focal length in pixels must be > 0")
    stems = _output_stems(images)
    student = None if is_onnx_export(model) else load_any(model).to(device)
    if student is None:
        predict = OnnxExport(Path(model)).predict
    else:
        predict = lambda rgb: predict_image(student, rgb, device)  # noqa: E731
    config = None if student is None else student.model.config
    f_c = canonical_focal(config)
    if focal_px is not None and f_c is None:
        what = "outputs metres blind to the camera" if is_metric(config) else "is relative"
        say(f"--focal-px ignored: {model} {what} (its output does not depend on the focal length)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, stem in zip(images, stems, strict=True):
        try:
            image = Image.open(path)
            rgb = np.array(image.convert("RGB"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the image ({e})") from e
        prediction = predict(rgb)
        if f_c is not None:
            h, w = rgb.shape[:2]
            ratio = student_input_size(student, h, w)[1] / w  # W_model / W_image
            f_px, source = image_focal(image, focal_px)
            say(focal_line(Path(path).name, f_px, source, f_c, ratio))
            prediction = metres(prediction, f_c, f_px, ratio)
        with publishing(out / f"{stem}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, prediction.astype(np.float32))
        write_bytes(out / f"{stem}.png", encode_png(colorize_robust(prediction)))
        written += [out / f"{stem}.npy", out / f"{stem}.png"]
        if done is not None:
            done(path)
    return written


def predicts_metres(model: Path) -> bool:
    """Whether `model` (a run, a Hugging Face directory or an ONNX export) is a metric student,
    without loading its weights."""
    if is_onnx_export(model):
        return False
    if (Path(model) / "config.yaml").is_file():
        return metric_fields(RunDir(Path(model)).read_config()) is not None
    config = Path(model) / "config.json"
    return config.is_file() and read_json(config).get("depth_estimation_type") == "metric"
