"""What `student export` and `student predict` do for a metric student.

A run trained with `student.output=metric` (its `config.yaml`: `student: {output: metric,
canonical_focal: f_c, max_depth: M}`) exports as a metric Depth Anything checkpoint: `config.json`
gets `depth_estimation_type: "metric"`, `max_depth: M` and, when f_c is set, `canonical_focal_px:
f_c`. Its output is then canonical depth, the depth the scene would have if the model's input had
focal length f_c pixels; in metres

    depth = predicted · fx_m / f_c,    fx_m = f_px · W_model / W_image

(`fx_m`: the focal length in pixels of the model's input, the image resized to the model's input
size). `student predict` takes `f_px` (pixels of the image) from `--focal-px`, else from the
image's EXIF 35 mm-equivalent focal length (`pipeline.dataset.camera.exif_intrinsics`), else
assumes the canonical camera (`fx_m = f_c`: the output as it is). Without f_c the export outputs
metres directly (blind to the camera).
"""

from __future__ import annotations

import copy
from typing import Any

from PIL import Image

from pipeline.dataset.camera import exif_intrinsics
from pipeline.images.decode import focal_35mm
from student.config import StudentSettings
from student.model import Student, apply_output_config, output_config

METRIC_CONFIG_KEYS = tuple(output_config(StudentSettings(output="metric")))
"""The `config.json` fields a metric student's export sets (`student.model.output_config`)."""
FORMULA = "depth = predicted · fx_m / f_c, fx_m = f_px · W_model / W_image"


def metric_fields(run_config: dict[str, Any]) -> dict[str, Any] | None:
    """The `config.json` fields of a metric run's export (`output_config` of the run's
    `student` settings; a null `canonical_focal_px` is left out), or None for a relative run."""
    fields = output_config(StudentSettings(**(run_config.get("student") or {})))
    return {k: v for k, v in fields.items() if v is not None} or None


def with_metric_head(student: Student, fields: dict[str, Any]) -> Student:
    """`student` with its model's config carrying `fields` (`metric_fields`; the others of
    `METRIC_CONFIG_KEYS` removed), rebuilt with the metric head (sigmoid × max_depth) where its
    config was not metric yet; its weights are loaded afterwards (the two heads have the same
    parameters)."""
    config = student.model.config
    every = {key: fields.get(key) for key in METRIC_CONFIG_KEYS}
    if all(getattr(config, k, None) == fields[k] for k in ("depth_estimation_type", "max_depth")):
        apply_output_config(config, every, "the run's student")
        return student
    config = copy.deepcopy(config)
    apply_output_config(config, every, "the run's student")
    model = student.family.model_class()(config)
    mean = tuple(student.mean.flatten().tolist())
    std = tuple(student.std.flatten().tolist())
    return Student(model, student.family, (mean, std), frozen_encoder=False, side=student.side)


def image_focal(image: Image.Image, given: float | None) -> tuple[float | None, str]:
    """The focal length in pixels of `image` and where it came from: `given` (`--focal-px`),
    else its EXIF 35 mm-equivalent focal length, else (None, "unknown")."""
    if given is not None:
        return float(given), "--focal-px"
    focal35 = focal_35mm(image)
    found = exif_intrinsics(focal35, image.height, image.width)
    if found is not None:
        return float(found.fx), f"EXIF {focal35:g} mm (35 mm equivalent)"
    return None, "unknown"


def focal_line(name: str, f_px: float | None, source: str, f_c: float, ratio: float) -> str:
    """What `student predict` says of one image: the focal length it used and where from
    (`ratio`: W_model / W_image)."""
    if f_px is None:
        return (
            f"{name}: focal length unknown: canonical camera assumed (f_c = {f_c:g} px of the "
            f"model input, {f_c / ratio:.1f} px of the image); pass --focal-px"
        )
    return f"{name}: focal length {f_px:.1f} px ({source})"


def metres(pred: Any, f_c: float, f_px: float | None, ratio: float) -> Any:
    """Canonical depth `pred` (array) in metres for an image of focal length `f_px` (None: the
    canonical camera), `ratio` = W_model / W_image."""
    if f_px is None:
        return pred
    return pred * (f_px * ratio / f_c)


def metric_intro(fields: dict[str, Any]) -> str:
    """The model card's sentence on what a metric student predicts."""
    top = f"metric depth in metres, in (0, {fields['max_depth']:g})"
    if "canonical_focal_px" not in fields:
        return f"It is a metric student: it predicts {top}, blind to the camera."
    return (
        f"It is a metric student: it predicts {top} as canonical depth at a focal length of "
        f"f_c = {fields['canonical_focal_px']:g} px, turned into metres by the image's focal "
        "length (see Metric depth)."
    )


def metric_card_section(fields: dict[str, Any]) -> str:
    """The model card's `## Metric depth`: f_c, the formula, and how to pass the camera."""
    f_c = fields.get("canonical_focal_px")
    if f_c is None:
        return (
            "## Metric depth\n\nThe output is depth in metres as it is (`config.json`: "
            f"`depth_estimation_type: metric`, `max_depth: {fields['max_depth']:g}`), learnt "
            "without the camera's focal length (no `canonical_focal_px`): an image taken with "
            "another lens than the training images' gets a wrongly scaled depth."
        )
    return (
        "## Metric depth\n\n"
        f"The output (`predicted_depth`) is **canonical depth**: the depth the scene would have "
        f"if the model's input had a focal length of f_c = {f_c:g} px (`config.json`: "
        f"`canonical_focal_px: {f_c:g}`, `depth_estimation_type: metric`, `max_depth: "
        f"{fields['max_depth']:g}`). In metres:\n\n"
        f"    {FORMULA}\n\n"
        "where f_px is the image's focal length in pixels, W_image its width and W_model the "
        "width of the model's input (the image resized by the image processor); fx_m is the "
        "focal length of the model's input.\n\n"
        "How to pass the camera:\n\n"
        "- `student predict MODEL IMAGE... --out DIR --focal-px F` (F in pixels of the input "
        "image) writes metres;\n"
        "- without `--focal-px`, the image's EXIF 35 mm-equivalent focal length "
        "(`FocalLengthIn35mmFilm`, read as 36 mm across the long side) is used;\n"
        "- else the canonical camera is assumed (fx_m = f_c: the output as it is), and "
        "`student predict` says so;\n"
        "- `evaluation run` passes each benchmark image's focal length from its calibration;\n"
        "- `transformers.pipeline('depth-estimation')` returns the canonical depth: multiply it "
        "by fx_m / f_c yourself."
    )
