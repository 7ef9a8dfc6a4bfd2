"""The one Teacher interface, the teacher registry and the resize helpers every adapter shares.

A teacher takes `[B,3,H,W]` float RGB in [0,1] on any device and returns `[B,1,H,W]` float32 on
the same device at the input resolution. Each adapter owns its resize and normalization: it
declares the size the model runs at (`_model_input_size`), implements `_forward` on that size, and
the base class resizes the raw output back (bilinear, then a clamp at 0 for outputs that are
non-negative by nature).

`interpolation` (one of `INTERPOLATIONS`, recorded in the input rule) is how the teacher's input
is resampled: the full view (`labelgen.views`) and the resize to the model's input size
(`resize_image`). Transformers adapters take it from the checkpoint's image processor (`resample`);
the diffusion adapters resize bilinearly, as their pipelines do. The planned region views are the
dataset's (PIL bilinear) whatever the teacher: teacher and student see the same view.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from labelgen.teachers.source import Checkpoint, ResolvedTeacher, checkpoint_sha256
from pipeline.labels.manifest import OUTPUT_KINDS, invariance_of
from pipeline.model.precision import check_precision
from pipeline.toolkit.registry import Registry

if TYPE_CHECKING:
    from labelgen.teachers.spec import TeacherSpec

# name -> Teacher subclass; `factory.resolve_teacher` asks it for the identity of a located
# checkpoint, `factory.load_teacher` calls `cls.from_checkpoint(resolved, device, precision)`.
TEACHERS: Registry[type[Teacher]] = Registry("teacher")

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
"""How a teacher's input may be resampled (`resize`; PIL's filters of the same names)."""


class Teacher(ABC):
    """A depth teacher. Subclasses set `adapter`, `options_help` and implement
    `from_checkpoint`, `_forward` and `full_view_size`; `predict` is the same for all of them.

    Before loading, `factory.resolve_teacher` asks the class, in order: `check_options` and
    `check` (errors that need no hashing), `parts_of` (other checkpoints it reads),
    `weights_identity` and `interpolation_of`; the `ResolvedTeacher` it builds is what
    `from_checkpoint` loads."""

    adapter: ClassVar[str] = ""
    # option key -> one-line help; unknown keys in a spec are errors that list these.
    options_help: ClassVar[dict[str, str]] = {}
    # Outputs below this are clamped after the resize back (None: no clamp).
    clamp_min: ClassVar[float | None] = 0.0

    def __init__(
        self,
        resolved: ResolvedTeacher,
        device: torch.device | str,
        precision: str,
        *,
        output_kind: str,
        input_rule: dict[str, Any],
        use_no_grad: bool = False,
    ) -> None:
        spec = resolved.spec
        if output_kind not in OUTPUT_KINDS:
            raise ValueError(
                f"teacher {spec.name!r}: output kind {output_kind!r} is not one of {OUTPUT_KINDS}"
            )
        self.name = spec.name
        self.source = spec.source
        self.options = dict(spec.options)
        self.output_kind = output_kind
        self.invariance = invariance_of(output_kind)
        self.input_rule = input_rule
        self.interpolation = input_rule.get("interpolation", "bilinear")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"teacher {spec.name!r}: input interpolation {self.interpolation!r} is not one "
                f"of {INTERPOLATIONS}"
            )
        if self.interpolation != resolved.interpolation:  # the column's identity says otherwise
            raise ValueError(
                f"teacher {spec.name!r}: the adapter resamples its input {self.interpolation}, "
                f"its identity says {resolved.interpolation}"
            )
        self.resolved = resolved
        self.weights_sha256 = resolved.weights_sha256
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = check_precision(precision)
        # BEiT-based models break under inference_mode (shared cached index): use no_grad.
        self.use_no_grad = use_no_grad

    @classmethod
    def check_options(cls, spec: TeacherSpec) -> None:
        """Refuse bad option values before the checkpoint is even looked for (nothing by
        default)."""
        return None

    @classmethod
    def check(cls, checkpoint: Checkpoint) -> None:
        """Refuse, before anything is hashed or loaded, what the checkpoint's configuration files
        already show to be wrong (nothing by default)."""
        return None

    @classmethod
    def parts_of(cls, checkpoint: Checkpoint) -> dict[str, Checkpoint]:
        """Other checkpoints the teacher reads besides `checkpoint`, located (none by
        default)."""
        return {}

    @classmethod
    def weights_identity(cls, checkpoint: Checkpoint, parts: dict[str, Checkpoint]) -> str:
        """Content hash of the weights of `checkpoint` (and its `parts`), without loading the
        model: the files are read once per job, here."""
        return checkpoint_sha256(checkpoint.directory)

    @classmethod
    def interpolation_of(cls, checkpoint: Checkpoint) -> str:
        """How the teacher resamples its input (`INTERPOLATIONS`), known without loading the
        model: part of a label column's identity. Bilinear unless an adapter reads otherwise
        from the checkpoint."""
        return "bilinear"

    @classmethod
    @abstractmethod
    def from_checkpoint(
        cls, resolved: ResolvedTeacher, device: torch.device, precision: str
    ) -> Teacher:
        """Load the teacher from its resolved checkpoint (`resolved.directory`)."""

    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: `[B,3,H,W]` float32 in [0,1] on `self.device`. Returns the raw prediction
        `[B,1,h,w]` (any float dtype, any size); `predict` resizes it back to `(H, W)`."""

    @abstractmethod
    def full_view_size(self, h: int, w: int) -> tuple[int, int]:
        """`(h', w')`: the size at which a whole `h`×`w` image is labelled (the teacher's own
        input rule); the caller resizes the image to it and the label is stored at it."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """`images`: `[B,3,H,W]` float RGB in [0,1], any device.
        Returns `[B,1,H,W]` float32 on the same device as `images`."""
        check_images(images)
        b, _, h, w = images.shape
        if b == 0:
            return images.new_zeros((0, 1, h, w), dtype=torch.float32)
        with self._grad_context():
            x = images.to(self.device, torch.float32)
            out = resize(self._forward(x).float(), (h, w))
            if self.clamp_min is not None:
                out = out.clamp_min(self.clamp_min)
        # outside inference mode: a normal tensor that callers may modify in place
        return out.to(images.device, copy=True)

    takes_focal: ClassVar[bool] = False
    """Whether the teacher's output depends on the image's focal length, given to
    `predict_with_focal` (Depth Pro, a metric student trained on canonical depth): callers that
    know a view's camera pass its focal length in pixels of the image they give."""

    def predict_with_focal(
        self, images: torch.Tensor, f_px: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`predict`, given the focal length `f_px` in pixels of each image as given (a number,
        one per image, or None / NaN where unknown), plus per image the focal length the output
        was computed with (float64 `[B]`, NaN: none) and whether the model estimated (or
        assumed) it rather than being given it (bool `[B]`). A teacher that does not take the
        focal length (`takes_focal` False) ignores it: NaN, False."""
        b = images.shape[0]
        nan = torch.full((b,), float("nan"), dtype=torch.float64)
        return self.predict(images), nan, torch.zeros(b, dtype=torch.bool)

    def _grad_context(self) -> contextlib.AbstractContextManager:
        return torch.no_grad() if self.use_no_grad else torch.inference_mode()

    def provenance(self) -> dict[str, Any]:
        """JSON-able identity of this teacher for label-column manifests."""
        return {
            "name": self.name,
            "adapter": self.adapter,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "output_kind": self.output_kind,
            "invariance": self.invariance,
            "input_rule": self.input_rule,
            "precision": self.precision,
            "options": dict(sorted(self.options.items())),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, source={self.source!r}, "
            f"output_kind={self.output_kind!r}, device={str(self.device)!r}, "
            f"precision={self.precision!r})"
        )


def check_images(images: torch.Tensor) -> None:
    """Raise unless `images` is a floating `[B,3,H,W]` tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"teacher input must be a [B,3,H,W] RGB tensor in [0,1], got {shape}")
    if not images.is_floating_point():
        raise ValueError(
            f"teacher input must be float RGB in [0,1], got {images.dtype}; divide uint8 by 255"
        )


def resize(x: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize `[B,C,H,W]` to `size`; no-op if equal.

    `bilinear`: antialiased when shrinking (the labels of every column made so far).
    `bicubic`: PIL's bicubic filter (a = -0.5, its support widened when shrinking), which is what
    `antialias=True` computes in both directions, enlarging included (without it torch uses
    a = -0.75, up to 0.03 of the range away from PIL). `nearest`: PIL's nearest (`nearest-exact`).
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if interpolation == "bicubic":
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    if interpolation == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if interpolation != "bilinear":
        raise ValueError(f"interpolation {interpolation!r} is not one of {INTERPOLATIONS}")
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def resize_image(x: torch.Tensor, size: Sequence[int], interpolation: str) -> torch.Tensor:
    """`resize` of RGB in [0,1], back inside [0,1]: bicubic overshoots (by ~0.01 at edges), while
    an image processor resizes 8-bit images, whose results cannot leave the range."""
    out = resize(x, size, interpolation)
    return out.clamp(0.0, 1.0) if interpolation == "bicubic" and out is not x else out


def ceil_to_multiple(v: int, m: int) -> int:
    """Smallest multiple of `m` that is ≥ `v` (and ≥ `m`)."""
    return max(m, math.ceil(v / m) * m)


def snap_to_multiple(v: float, m: int) -> int:
    """Nearest multiple of `m` to `v` (at least `m`)."""
    return max(m, int(round(v / m)) * m)


def short_side_size(h: int, w: int, short: int, multiple: int) -> tuple[int, int]:
    """Keep aspect, short side = `short`, both sides multiples of `multiple`."""
    scale = short / min(h, w)
    return snap_to_multiple(h * scale, multiple), snap_to_multiple(w * scale, multiple)


def long_side_size(h: int, w: int, long: int, multiple: int) -> tuple[int, int]:
    """Keep aspect, long side = `long`, both sides multiples of `multiple`."""
    scale = long / max(h, w)
    return snap_to_multiple(h * scale, multiple), snap_to_multiple(w * scale, multiple)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """`(x - mean) / std` per channel for `[B,3,H,W]`."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
