"""Settings of `student train`: defaults <- `--config FILE` <- `--set key=value`.

The paper's setting is the default; `configs/` holds the ablations as files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.labels.quality import DEFAULT_MAX_UNUSABLE
from pipeline.toolkit.launch import check_precision_name
from student.data.augment import AugmentSettings
from student.data.fusion import MIXES
from student.losses import NORMALIZATIONS

NORMS = (*NORMALIZATIONS, "auto")
"""What each loss term's normalization setting takes: a normalization, or `auto` (resolved from
the number of teachers when the run starts, `LossSettings.resolved`)."""
NORM_SETTINGS = ("norm_sc", "norm_lg", "norm_grad")
"""The normalization settings of `LossSettings`, one per loss term."""
MODES = ("cross_context", "baseline")
"""`data.mode`: cross-context views (regions + tiles) or the paper's baseline (whole image)."""


@dataclass
class DataSettings:
    """What the student reads."""

    mode: str = "cross_context"
    """'cross_context' (regions + tiles) or 'baseline' (whole image, `full` labels, no crops)."""
    teacher_weights: list[float] = field(default_factory=list)
    """Probability weights of the teachers (same order as --teacher); empty = from the roles
    when given, else uniform."""
    teacher_roles: list[str] = field(default_factory=list)
    """Role of each teacher (same order as --teacher): primary or assistant (v2's
    assistant-guided distillation); empty = no roles. Without teacher_weights the primary is
    drawn with probability 0.7 and the assistants share 0.3 (v2's 7:3)."""
    teacher_mix: str = "select"
    """select: each iteration (or sample) learns from one teacher drawn with the weights (v2's
    selection); average: from one label fused from all teachers with those weights, where they
    agree (v2 Table 4's averaging control; student/data/fusion.py defines it)."""
    average_keep: float = 0.8
    """With teacher_mix=average: the fraction of each label map's pixels that count, those where
    the teachers agree best (the rest are left out of the loss)."""
    per_sample_teacher: bool = False
    """Draw the teacher per sample instead of one teacher per iteration."""
    size: int = 560
    """Side of the views the student sees, in pixels: the regions and tiles are resized to it
    (the student resizes them to its own side, `input_side`)."""
    shuffle_buffer: int = 64
    """Samples held in the shuffle buffer of each loader worker."""
    workers: int = 2
    """DataLoader worker processes per rank."""
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    """Flip (image and labels together) and photometric jitter/blur (student input only)."""
    max_unusable: float = DEFAULT_MAX_UNUSABLE
    """Refuse a teacher column whose unusable maps (no finite value, or one value everywhere)
    exceed this fraction of its maps: its teacher's output is broken (`pipeline verify
    --max-unusable` applies the same rule)."""

    def __post_init__(self) -> None:
        """Settings that exist are valid: each rule is checked here, once."""
        if self.mode not in MODES:
            raise ValueError(f"data.mode must be one of {MODES}, got {self.mode!r}")
        if self.teacher_mix not in MIXES:
            raise ValueError(f"data.teacher_mix must be one of {MIXES}, got {self.teacher_mix!r}")
        if not 0 < self.average_keep <= 1:
            raise ValueError(f"data.average_keep must be in (0, 1], got {self.average_keep}")
        if self.teacher_mix == "average" and self.per_sample_teacher:
            raise ValueError("data.per_sample_teacher draws a teacher per sample: not with average")
        if self.size < 14:
            raise ValueError(f"data.size must be ≥ 14 pixels, got {self.size}")
        if self.shuffle_buffer < 0 or self.workers < 0:
            raise ValueError(
                f"data.shuffle_buffer and data.workers must be ≥ 0, got {self.shuffle_buffer} "
                f"and {self.workers}"
            )


@dataclass
class LossSettings:
    """L = L_sc + lambda_lg * L_lg + lambda_feat * L_feat + lambda_grad * L_grad."""

    shared_context: bool = True
    """Use the shared-context term L_sc (teacher and student saw the same region)."""
    local_global: bool = True
    """Use the local-global term L_lg (teacher tiles vs the student's region prediction)."""
    lambda_lg: float = 0.5
    """Weight of L_lg (paper: 0.5)."""
    lambda_feat: float = 1.0
    """Weight of the feature-alignment term (paper: 1.0); 0 disables it."""
    lambda_grad: float = 2.0
    """Weight of the gradient-matching term (paper: 2.0); 0 disables it. It matches the
    shared-context label, or the tiles (mapped as in L_lg) when shared_context is false."""
    norm_sc: str = "auto"
    """Normalization of L_sc: global, hybrid, local, none; auto = hybrid with several teachers,
    none with one (resolved when the run starts; the run's config.yaml holds the result)."""
    norm_lg: str = "hybrid"
    """Normalization of L_lg (the same choices as norm_sc, auto included)."""
    norm_grad: str = "global"
    """Normalization inside the gradient-matching term (the same choices as norm_sc, auto
    included)."""
    feat_margin: float = 0.85
    """Tokens whose cosine similarity to the frozen encoder exceeds this contribute nothing."""
    metric_loss: str = "silog"
    """A metric student's term on log depth (shared-context views and tiles): silog (scale-
    invariant log loss, with silog_lambda) or log_l1 (|log p - log t|, fully scale-aware)."""
    silog_lambda: float = 0.85
    """λ of silog: 0 learns the scale as strongly as the structure (RMS log error), 1 ignores a
    global scale (a relative loss)."""
    lambda_far: float = 0.1
    """A metric student's weight of the far term (part of L_sc): on pixels whose label is far
    (sky, +inf, or beyond student.max_depth) the log of the prediction is pulled up to the log
    of 0.95 · max_depth."""

    def term_norms(self) -> dict[str, str]:
        """`{term: its normalization}` of the distillation terms these settings use, in order:
        `sc`, `lg`, `grad`."""
        used = {"sc": self.shared_context, "lg": self.local_global, "grad": self.lambda_grad > 0}
        return {term: getattr(self, f"norm_{term}") for term, on in used.items() if on}

    def resolved(self, n_teachers: int) -> LossSettings:
        """These settings with every `auto` normalization made concrete: hybrid with several
        teachers (their scales differ), none with one. A run resolves them once, when it starts,
        and its `config.yaml` records the result (so `--resume` reads concrete values)."""
        auto = "hybrid" if n_teachers > 1 else "none"
        return replace(self, **{n: auto for n in NORM_SETTINGS if getattr(self, n) == "auto"})


OUTPUTS = ("relative", "metric")
"""`student.output`: relative (disparity up to scale and shift, the paper's students) or metric
depth."""
METRIC_LOSSES = ("silog", "log_l1")
"""`loss.metric_loss`: the scale-aware term on log depth of a metric student."""


@dataclass
class StudentSettings:
    """What the student outputs."""

    output: str = "relative"
    """relative: disparity up to scale and shift (the paper's students); metric: depth in metres.
    A metric student learns from metric teachers (their labels in metres; a relative teacher
    feeds only its scale-and-shift invariant terms) and needs a Depth Anything model (its head
    gets the metric activation, sigmoid × max_depth)."""
    canonical_focal: float | None = 500.0
    """A metric student learns canonical depth `d · f_c / fx'`: f_c (this, in pixels of the
    model's input) over the view's effective focal length fx', so a crop resized to the view size
    (a longer lens) is not ambiguous. Every image then needs its camera (`pipeline prepare
    --intrinsics`, EXIF or the world). At prediction `depth = output · fx / f_c` with the image's
    focal length (`student predict --focal-px`). Unset (null): raw metres, blind to the camera (a
    control)."""
    max_depth: int = 80
    """The largest (canonical) depth a metric student can output, whole metres (the head's
    max_depth); labels beyond it (and
    a teacher's sky, +inf) are far: left out of the log terms, the student learns to output its
    far depth there (`loss.lambda_far`)."""

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"student.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.canonical_focal is not None and not self.canonical_focal > 0:
            raise ValueError(
                f"student.canonical_focal must be > 0 pixels or null, got {self.canonical_focal}"
            )
        if not self.max_depth > 0:
            raise ValueError(f"student.max_depth must be > 0 metres, got {self.max_depth}")

    @property
    def metric(self) -> bool:
        return self.output == "metric"


@dataclass
class OptimSettings:
    """AdamW with warm-up then polynomial decay."""

    lr: float = 5e-5
    """Decoder learning rate (paper: 5e-5)."""
    encoder_lr_ratio: float = 0.1
    """Encoder learning rate = lr * this (10x lower by default)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 500
    """Linear warm-up steps (capped at a tenth of the run)."""
    poly_power: float = 0.9
    """Exponent of the polynomial decay after warm-up."""
    grad_clip: float = 1.0
    """Gradient-norm clipping; 0 disables it."""
    accumulate: int = 1
    """Gradient-accumulation micro-batches per optimizer step."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights kept beside them (e.g. 0.999), saved
    in each checkpoint; `student export` and `evaluation run --model RUN` then use the average.
    0: off."""


@dataclass
class CheckpointSettings:
    """Which published checkpoints (`RUN/checkpoints/step_NNNNNNN.pt`) a run keeps."""

    keep_last: int | None = None
    """Keep only the newest N checkpoints: an older one is deleted once a newer one is published
    (unless keep_every keeps it). Unset (None): keep every checkpoint."""
    keep_every: int | None = None
    """With keep_last: also keep every checkpoint whose step is a multiple of this (e.g. 5000 for
    a learning curve). Unset (None): none beyond keep_last."""

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"checkpoint.{name} must be ≥ 1 or unset, got {value!r}")

    def keeps(self, step: int, newest: list[int]) -> bool:
        """Whether the checkpoint of `step` is kept, `newest` the steps of the newest
        `keep_last` published checkpoints."""
        if self.keep_last is None or step in newest:
            return True
        return self.keep_every is not None and step % self.keep_every == 0


INIT_WEIGHTS = ("full", "encoder")
"""What `--init` loads: every weight (`full`), or only the DINOv2 encoder with the DPT neck and
head initialised at random as a new model of that architecture is (`encoder`: the paper's
headline models, v2 appendix C.1)."""


@dataclass
class TrainSettings:
    """Everything `student train` needs besides the dataset, teachers, init and run directory."""

    steps: int = 20000
    """Optimizer steps (paper ablations: 20k at batch 4)."""
    init_weights: str = "full"
    """What --init loads: full (every weight), or encoder (only the DINOv2 encoder; the DPT neck
    and head start at random, as the paper's headline models do, v2 appendix C.1). The frozen
    feature-alignment copy is the loaded encoder either way."""
    batch_size: int = 4
    """Samples per rank per micro-batch."""
    seed: int = 0
    """Seed of model-independent randomness (data order, regions, flips, augmentation)."""
    precision: str = "bf16"
    """Autocast precision on GPU: bf16, fp16 or fp32 (CPU always runs fp32). Swin V2 students
    overflow in fp16."""
    input_side: int | None = None
    """The side the student computes at: its views (data.size) are resized to it and its
    prediction back. Unset (None): its family's: data.size rounded up to a multiple of 14
    (Depth Anything) or 32 (DPT, Swin V2), or the pretraining side of a BEiT (512 or 384), whose
    position bias degrades at other sides."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (the last step is always saved; checkpoint.keep_last bounds
    how many are kept)."""
    log_every: int = 10
    """Steps between metric records in metrics.jsonl."""
    max_bad_steps: int = 20
    """The run stops at this many skipped steps in a row. A step is skipped (and recorded in
    metrics.jsonl) when its loss or gradient is not finite, on an fp16 overflow, or when a batch
    holds no valid label pixel."""
    tensorboard: bool = False
    """Also write the metrics.jsonl values as TensorBoard scalars to RUN/tensorboard (needs the
    `tensorboard` extra: pip install "distill-any-depth-pipeline[tensorboard]")."""
    threads: int | None = None
    """Intra-op CPU threads of each rank (torch.set_num_threads), pinned for the whole run: on
    CPU the sums of a step depend on them. Unset (None): OMP_NUM_THREADS, else the usable CPUs
    shared among the node's ranks, resolved when the run starts (config.yaml records it)."""
    deterministic: bool = False
    """Deterministic kernels on GPU too, where PyTorch has them (torch.use_deterministic_algorithms,
    cuDNN deterministic, CUBLAS_WORKSPACE_CONFIG), at some speed cost; a warning names each
    operation that has none (README: Reproducibility). CPU runs always use them."""
    data: DataSettings = field(default_factory=DataSettings)
    loss: LossSettings = field(default_factory=LossSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    student: StudentSettings = field(default_factory=StudentSettings)

    def validate(self) -> None:
        if self.init_weights not in INIT_WEIGHTS:
            choices = " or ".join(INIT_WEIGHTS)
            raise ValueError(f"init_weights must be {choices}, got {self.init_weights!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be ≥ 1 or unset, got {self.threads}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be ≥ 1 (--steps, --batch-size)")
        for name in NORM_SETTINGS:
            if getattr(self.loss, name) not in NORMS:
                raise ValueError(f"loss.{name} must be one of {NORMS}")
        if self.input_side is not None and self.input_side < 14:
            raise ValueError(f"input_side must be ≥ 14 pixels or unset, got {self.input_side}")
        check_precision_name(self.precision, "precision")
        if not 0 <= self.optim.ema < 1:
            raise ValueError(f"optim.ema must be in [0, 1) (0: off), got {self.optim.ema}")
        if self.optim.accumulate < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("optim.accumulate, checkpoint_every and log_every must be ≥ 1")
        if self.data.mode == "baseline" and self.loss.local_global:
            raise ValueError("the baseline has no tiles: set loss.local_global=false with it")
        if self.loss.metric_loss not in METRIC_LOSSES:
            raise ValueError(f"loss.metric_loss must be one of {METRIC_LOSSES}")
        if not 0 <= self.loss.silog_lambda <= 1 or self.loss.lambda_far < 0:
            raise ValueError("loss.silog_lambda must be in [0, 1] and loss.lambda_far ≥ 0")
        if self.student.metric and self.data.teacher_mix != "select":
            raise ValueError(
                "a metric student learns from one teacher's labels at a time: set "
                "data.teacher_mix=select (averaging mixes metric and relative labels)"
            )
        if not (self.loss.shared_context or self.loss.local_global):
            raise ValueError(
                "no distillation term: set loss.shared_context=true and/or loss.local_global=true "
                "(the paper's baseline is configs/baseline.yaml)"
            )
