"""Loading a model prints nothing of the libraries' own (no "Loading weights" bar, no torchvision
fallback warning, no ONNX exporter notes), while a real warning still shows."""

from __future__ import annotations

import io
import logging
import warnings

import pytest

from pipeline.model.quiet import quiet_loading

LOGGERS = ("transformers", "torch.onnx")
ADAPTER = "depth-anything-v2"


def _capture_logs() -> tuple[io.StringIO, logging.Handler]:
    """A handler on the libraries' loggers (their own handlers write to a stream of their
    import time, which capsys does not see)."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return log, handler


def _release(handler: logging.Handler) -> None:
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)


def test_loading_a_student_and_teachers_prints_nothing(tmp_path, capsys):
    import transformers
    from transformers.utils import logging as hf_logging

    from labelgen.teachers import load_teacher, parse_teacher_spec, write_tiny_checkpoint
    from student.model import image_processor, load_student

    dav2 = write_tiny_checkpoint("depth-anything-v2", tmp_path / "dav2")
    dpt = write_tiny_checkpoint("dpt", tmp_path / "dpt")
    hf_logging.warning_once.cache_clear()  # transformers warns once per process: again here
    vars(transformers).pop("DPTImageProcessor", None)  # the PIL fallback is looked up anew
    capsys.readouterr()
    log, handler = _capture_logs()
    try:
        student = load_student(dav2)
        image_processor(dav2, student.model.config)  # as predict and export do
        load_teacher(parse_teacher_spec(f"dav={ADAPTER}:{dav2}"), device="cpu")
        load_teacher(parse_teacher_spec(f"dpt=dpt:{dpt}"), device="cpu")
    finally:
        _release(handler)
    out, err = capsys.readouterr()
    assert (out, err, log.getvalue()) == ("", "", "")


def test_known_noise_is_hidden_only_within_a_load_and_real_messages_still_show():
    hf, onnx = logging.getLogger("transformers"), logging.getLogger("torch.onnx")
    log, handler = _capture_logs()
    noise = "`DPTImageProcessor` requires torchvision (not installed); falling back to `X`"
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with quiet_loading():
                hf.getChild("models.dpt").warning(noise)
                hf.getChild("modeling_utils").warning("Some weights were not used: head.bias")
                warnings.warn("a real warning", UserWarning, stacklevel=1)
                onnx.getChild("x").warning(
                    "torchvision is not installed. Skipping torchvision::nms"
                )
            with quiet_loading(export=True):
                onnx.getChild("x").warning(
                    "torchvision is not installed. Skipping torchvision::roi_align"
                )
                warnings.warn(
                    "`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, stacklevel=1
                )
            hf.getChild("models.dpt").warning(noise)  # outside a load, nothing is filtered
    finally:
        _release(handler)
    lines = log.getvalue().splitlines()
    assert lines == ["Some weights were not used: head.bias", lines[1], noise]
    assert (
        lines[1] == "torchvision is not installed. Skipping torchvision::nms"
    )  # shown unless exporting
    assert [str(w.message) for w in warned] == ["a real warning"]


@pytest.mark.slow
def test_an_onnx_export_prints_nothing_of_the_exporter(tmp_path, capsys):
    """The exporter's four notes that torchvision is missing and its FutureWarning (an export
    takes 15 to 40 s on 2 cores)."""
    pytest.importorskip("onnxscript")
    from labelgen.teachers import write_tiny_checkpoint
    from student.model import load_student
    from student.onnx_export import export_onnx

    student = load_student(write_tiny_checkpoint("depth-anything-v2", tmp_path / "dav2"))
    capsys.readouterr()
    log, handler = _capture_logs()
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            export_onnx(student, tmp_path / "onnx")
    finally:
        _release(handler)
    out, err = capsys.readouterr()
    assert (out, err, log.getvalue()) == ("", "", "")
    assert [str(w.message) for w in warned if "LeafSpec" in str(w.message)] == []
