"""Loading a checkpoint without the noise of the libraries that load it.

Each `from_pretrained` of transformers draws a "Loading weights" bar (a raw tqdm bar, even into a
log), diffusers a "Loading pipeline components" one, and transformers without torchvision warns
that it falls back to the PIL image processor; an ONNX export logs four lines about torchvision
operators it skips and a FutureWarning. `quiet_loading()` hides exactly these while a model loads
(or exports): the bars of transformers, diffusers and the hub, and the known messages (`NOISE`,
`EXPORT_NOISE`). Everything else still shows: exceptions propagate, and a load report about
missing or unexpected weights (a transformers warning) is printed as before. The filters are
removed after the load, so the same messages outside one still show.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator

NOISE = (
    r"`\w+` requires torchvision \(not installed\); falling back to `\w+`",
    r"Requested \w+ backend is not available\. Falling back to \w+ backend",
)
"""Messages a load prints that say nothing about the checkpoint (regular expressions, matched
at the start of a logged message or a warning)."""
EXPORT_NOISE = (
    r"torchvision is not installed\. Skipping torchvision::",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
"""What `torch.onnx.export` prints or warns about its own steps (`quiet_loading(export=True)`)."""


class _DropNoise(logging.Filter):
    """A logging filter that drops records whose message matches one of `patterns`."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage().lstrip())


def _library_loggers() -> list[logging.Logger]:
    names = ("transformers", "diffusers", "huggingface_hub", "torch", "torch.onnx", "onnxscript")
    return [logging.getLogger(name) for name in names]


@contextlib.contextmanager
def _no_bars() -> Iterator[None]:
    """transformers', diffusers' and the hub's tqdm bars off, restored afterwards."""
    libs = [m for m in ("transformers", "diffusers") if m in sys.modules]
    restore = []
    for name in libs:
        try:
            logging_module = __import__(f"{name}.utils.logging", fromlist=["logging"])
        except ImportError:  # pragma: no cover - an odd version without it
            continue
        if logging_module.is_progress_bar_enabled():
            logging_module.disable_progress_bar()
            restore.append(logging_module.enable_progress_bar)
    try:
        yield
    finally:
        for enable in restore:
            enable()


@contextlib.contextmanager
def quiet_loading(export: bool = False) -> Iterator[None]:
    """Within it, a model loads (or, with `export`, exports to ONNX) without progress bars and
    without the known messages that say nothing about the model (see the module)."""
    patterns = NOISE + (EXPORT_NOISE if export else ())
    noise = _DropNoise(patterns)
    loggers = _library_loggers()
    for logger in loggers:
        logger.addFilter(noise)
    handler_filters = []
    for logger in [*loggers, logging.getLogger()]:  # handlers see the records of child loggers
        for handler in logger.handlers:
            handler.addFilter(noise)
            handler_filters.append(handler)
    try:
        with warnings.catch_warnings(), _no_bars():
            for pattern in patterns:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)
        for handler in handler_filters:
            handler.removeFilter(noise)
