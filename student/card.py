"""The model card `README.md` that `student export` writes beside the weights.

YAML metadata a Hugging Face hub reads (`library_name`, `pipeline_tag`, `tags`, `base_model` when
the init is a hub id, `license` when given or found in a local init's own card), then what made
the model: the initial checkpoint and which of its weights were kept, the teachers with their
weights' identity (their label columns' manifests), the dataset (image count, plan hash), the
training settings and the steps trained (continuations included), and the evaluation results of
the `evaluation run` directories given to `student export --eval`.

Everything is read from the run directory (`config.yaml`, `continued.yaml`, `env.json`,
`inputs.json` when the run wrote one), the dataset it names (if that moved, the card says so) and
each `summary.json` (`student.card_evaluation`, which checks it scored this model). The card
states what ran (the precision of the device that trained, the warm-up the schedule really had)
and holds no absolute local path: it is meant for the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.model.source import is_local_dir
from pipeline.toolkit.config import to_dict
from student.card_evaluation import evaluation_section, read_summaries
from student.card_inputs import (
    dataset_section,
    is_hub_id,
    load_info,
    read_inputs,
    source_name,
    teachers_section,
)
from student.export_metric import metric_card_section, metric_fields, metric_intro
from student.families import trained_on
from student.optim import lr_factor
from student.rundir import Job, RunDir, checkpoint_name

PAPER = "https://arxiv.org/abs/2502.19204"
INIT_WEIGHTS_TEXT = {
    "full": "all weights (encoder, neck and head)",
    "encoder": "the encoder only (neck and head newly initialised)",
}


def model_card(
    run_dir: Path,
    step: int,
    fmt: str = "hf",
    precision: str = "fp32",
    evals: list[Path] | tuple[Path, ...] = (),
    license_id: str | None = None,
) -> str:
    """The card (Markdown with YAML front matter) of run `run_dir`'s checkpoint at `step`,
    exported as `fmt` (`hf` or `onnx`); `evals`: `evaluation run` directories (or their
    `summary.json`) of this model."""
    run = RunDir(Path(run_dir))
    summaries = read_summaries(evals, run.root, step)
    job = _job(run)
    title = f"# {run.root.resolve().name}"
    metric = metric_fields(run.read_config())
    if job is None:  # a config.yaml that records only the init (made by hand or by a test)
        init = str(run.read_config().get("init", "?"))
        metadata = card_metadata(init, fmt, license_id)
        sections = [title, _intro(fmt, precision, metric), _bare_training(run, init, step)]
    else:
        (info, problem), inputs = load_info(job.dataset), read_inputs(run)
        metadata = card_metadata(job.init, fmt, license_id)
        sections = [
            title,
            _intro(fmt, precision, metric),
            _training(job, run, step),
            teachers_section(job, info, problem, inputs),
            dataset_section(job, info, problem, inputs),
        ]
    if metric is not None:
        sections.insert(2, metric_card_section(metric))
    sections.append(evaluation_section(summaries))
    if job is not None:
        sections.append(_settings(job))
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n\n".join(sections) + "\n"


def _job(run: RunDir) -> Job | None:
    """The job the run records, or None when `config.yaml` has no dataset, teachers or
    settings (a bad settings record is an error, as for `--resume`)."""
    if not {"dataset", "teachers", "init", "settings"} <= set(run.read_config()):
        return None
    return run.read_job()


def _bare_training(run: RunDir, init: str, step: int) -> str:
    return (
        f"## Training\n\n- Initial checkpoint (`--init`): `{source_name(init)}`\n- Steps "
        f"trained: {step} (checkpoint `{checkpoint_name(step)}`)\n- The run's `config.yaml` "
        "records no dataset, teachers or settings: they are not described here."
    )


def card_metadata(init: str, fmt: str, license_id: str | None = None) -> dict[str, Any]:
    """The card's YAML metadata for a model trained from `init`, exported as `fmt`."""
    tags = ["depth-estimation", "depth-anything", "distill-any-depth", "knowledge-distillation"]
    meta: dict[str, Any] = {}
    if fmt == "onnx":
        meta["library_name"] = "onnx"
        tags.append("onnx")
    else:
        meta["library_name"] = "transformers"
    meta["pipeline_tag"] = "depth-estimation"
    meta["tags"] = tags
    if is_hub_id(init):
        meta["base_model"] = init
        meta["base_model_relation"] = "finetune"
    license_id = license_id or _init_license(init)
    if license_id:
        meta["license"] = license_id
    return meta


def _init_license(init: str) -> str | None:
    """The `license` of a local init directory's own model card, if it has one."""
    card = Path(init) / "README.md"
    if not (is_local_dir(init) and card.is_file()):
        return None
    text = card.read_text(errors="replace")
    if not text.startswith("---"):
        return None
    try:
        meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError):
        return None
    value = meta.get("license") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def _intro(fmt: str, precision: str, metric: dict[str, Any] | None = None) -> str:
    what = (
        "It predicts relative disparity (affine-invariant: up to an unknown scale and shift; "
        "larger is nearer)."
        if metric is None
        else metric_intro(metric)
    )
    text = (
        "A Depth Anything V2 student (DPT head on a DINOv2 encoder) distilled from depth teachers "
        f"with the cross-context distillation of [Distill Any Depth]({PAPER}) by "
        f"`distill-any-depth-pipeline`. {what}"
    )
    if fmt == "onnx":
        use = (
            f"Format: ONNX (`model.onnx`, {precision}), dynamic batch, height and width. Feed RGB "
            "in [0, 1], NCHW float32, height and width multiples of 14 (the normalization is "
            "inside the model); it returns disparity `[B, 1, H, W]`. `preprocessing.json` holds "
            "the resize rule, mean and std and the opset.\n\n"
            "```python\nimport onnxruntime\n\n"
            'session = onnxruntime.InferenceSession("model.onnx")\n'
            "# x: [B, 3, H, W] float32 RGB in [0, 1]\n"
            'disparity = session.run(["disparity"], {"images": x})[0]  # [B, 1, H, W]\n```'
        )
    else:
        use = (
            "Format: Hugging Face transformers (`DepthAnythingForDepthEstimation`):\n\n"
            "```python\nfrom transformers import pipeline\n\n"
            'depth = pipeline("depth-estimation", model="PATH_OR_ID")(image)\n```'
        )
    return f"{text}\n\n{use}"


BENCHMARK_NAMES = {"nyu": "NYUv2", "kitti": "KITTI"}
"""The benchmarks `Family.trained_on` names, as the card spells them."""


def _training(job: Job, run: RunDir, step: int) -> str:
    s = job.settings
    lines = [
        "## Training",
        "",
        f"- Initial checkpoint (`--init`): `{source_name(job.init)}`; kept "
        f"{INIT_WEIGHTS_TEXT.get(s.init_weights, s.init_weights)} (`init_weights: "
        f"{s.init_weights}`)",
        f"- Steps trained: {step} (checkpoint `{checkpoint_name(step)}`; "
        f"the run's total: {s.steps})",
    ]
    seen = trained_on(run.architecture) if (run.architecture / "config.json").is_file() else []
    if seen:
        names = " and ".join(BENCHMARK_NAMES.get(d, d) for d in seen)
        lines.append(
            f"- Not zero-shot on {names}: the init's architecture family (MiDaS v3.1) was trained "
            "on them, so its scores there are not zero-shot"
        )
    for at_step, steps in job.continued:
        lines.append(f"- Continued at step {at_step} to {steps} steps in all (`--resume --steps`)")
    if job.continued:
        lines.append(
            f"- First total {job.schedule_steps} steps (`config.yaml`); from each continuation on "
            "the learning-rate schedule is that of its new total, without a second warm-up"
        )
    ranks = _world_size(run)
    per_step = s.batch_size * s.optim.accumulate * (ranks or 1)
    lines += [
        f"- Batch: {s.batch_size} per rank × {ranks or '?'} rank(s) × {s.optim.accumulate} "
        f"accumulation = {per_step} image(s) per step; input side {s.data.size}; "
        f"{ran_precision(run, s.precision)}",
        f"- Data mode `{s.data.mode}`; losses: shared-context {_on(s.loss.shared_context)} "
        f"(`{s.loss.norm_sc}`), local-global {_on(s.loss.local_global)} (λ {s.loss.lambda_lg}, "
        f"`{s.loss.norm_lg}`), feature alignment λ {s.loss.lambda_feat} (margin "
        f"{s.loss.feat_margin}), gradient λ {s.loss.lambda_grad} (`{s.loss.norm_grad}`)",
        f"- AdamW: decoder lr {s.optim.lr}, encoder × {s.optim.encoder_lr_ratio}, "
        f"{_warmup(job)}, poly power {s.optim.poly_power}, weight decay "
        f"{s.optim.weight_decay}; seed {s.seed}",
    ]
    if s.optim.ema:
        lines.append(
            f"- Weights: the exponential moving average of the trained weights (decay "
            f"{s.optim.ema}, `optim.ema`), not the last step's"
        )
    return "\n".join(lines)


def warmup_steps(job: Job) -> int:
    """The warm-up steps the run's schedule had (`student.optim.lr_factor`: the first step's
    factor is 1 / warm-up)."""
    o = job.settings.optim
    return round(1 / lr_factor(0, job.schedule_steps, o.warmup_steps, o.poly_power))


def _warmup(job: Job) -> str:
    warm, asked = warmup_steps(job), job.settings.optim.warmup_steps
    text = f"linear warm-up {warm} step{'s' if warm != 1 else ''}"
    if warm != asked:
        text += f" (`warmup_steps: {asked}`, capped at a tenth of the run's steps)"
    return text


def _env(run: RunDir) -> dict[str, Any]:
    try:
        env = json.loads((run.root / "env.json").read_text())
    except (OSError, ValueError):
        return {}
    return env if isinstance(env, dict) else {}


def ran_precision(run: RunDir, setting: str) -> str:
    """The precision the run's sessions computed in: `setting` as autocast on a GPU, fp32 on
    a CPU (`env.json` records each session's device; older runs' only whether torch had CUDA)."""
    env = _env(run)
    sessions = [env, *[r for r in env.get("resumes", []) if isinstance(r, dict)]]
    devices = {d.get("device") for d in sessions if d.get("device")}
    if not devices and env and env.get("cuda") is None:
        devices = {"cpu"}  # a torch without CUDA runs on the CPU
    if setting == "fp32":
        return "fp32"
    if devices and "cuda" not in devices:
        return f"fp32 (on a CPU; `precision: {setting}` applies on a GPU)"
    if devices == {"cuda"}:
        return f"{setting} autocast (GPU)"
    if devices:
        return f"{setting} autocast on a GPU, fp32 in the sessions that ran on a CPU"
    return f"{setting} autocast on a GPU, fp32 on a CPU (the run did not record its device)"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _world_size(run: RunDir) -> int | None:
    try:
        value = json.loads((run.root / "env.json").read_text()).get("world_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _settings(job: Job) -> str:
    settings = yaml.safe_dump(to_dict(job.settings), sort_keys=False)
    teachers = ", ".join(job.teachers)
    return (
        "## All settings\n\n<details>\n<summary>resolved training settings "
        f"(teachers: {teachers})</summary>\n\n```yaml\n{settings}```\n\n</details>"
    )
