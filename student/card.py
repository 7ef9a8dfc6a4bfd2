"""The model card `README.md` that `student export` writes beside the weights.

YAML metadata a Hugging Face hub reads (`library_name`, `pipeline_tag`, `tags`, `base_model` when
the init is a hub id, `license` when given or found in a local init's own card), then what made
the model: the initial checkpoint and which of its weights were kept, the teachers with their
weights' identity (their label columns' manifests), the dataset (image count, plan hash), the
training settings and the steps trained (continuations included), and the evaluation results of
the `evaluation run` directories given to `student export --eval`.

Everything is read from the run directory (`config.yaml`, `continued.yaml`, `env.json`), the
dataset it names (if that moved, the card says so) and each `summary.json`, read as plain JSON
(the student never imports `evaluation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.dataset.info import DatasetInfo, load_dataset
from pipeline.labels.column import LabelColumn
from pipeline.model.source import is_local_dir, looks_like_path
from pipeline.toolkit.config import to_dict
from student.families import trained_on
from student.rundir import Job, RunDir, checkpoint_name

PAPER = "https://arxiv.org/abs/2502.19204"
METRICS = ("abs_rel", "delta1", "delta2", "delta3")
"""The metrics the card shows, labelled as each `summary.json` says (`metrics`: the evaluation's
one table of metrics); a summary written before it carried them shows the keys."""
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
    summaries = [read_summary(Path(p)) for p in evals]
    job = _job(run)
    title = f"# {run.root.resolve().name}"
    if job is None:  # a config.yaml that records only the init (made by hand or by a test)
        init = str(run.read_config().get("init", "?"))
        metadata = card_metadata(init, fmt, license_id)
        sections = [title, _intro(fmt, precision), _bare_training(run, init, step)]
    else:
        info, problem = _dataset(job.dataset)
        metadata = card_metadata(job.init, fmt, license_id)
        sections = [
            title,
            _intro(fmt, precision),
            _training(job, run, step),
            _teachers(job, info, problem),
            _dataset_section(job, info, problem),
        ]
    sections.append(_evaluation(summaries))
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
        f"## Training\n\n- Initial checkpoint (`--init`): `{init}`\n- Steps trained: {step} "
        f"(checkpoint `{checkpoint_name(step)}`)\n- `{run.config}` records no dataset, teachers "
        "or settings: they are not described here."
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
    if _is_hub_id(init):
        meta["base_model"] = init
        meta["base_model_relation"] = "finetune"
    license_id = license_id or _init_license(init)
    if license_id:
        meta["license"] = license_id
    return meta


def _is_hub_id(init: str) -> bool:
    return not is_local_dir(init) and not looks_like_path(init)


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


def _intro(fmt: str, precision: str) -> str:
    text = (
        "A Depth Anything V2 student (DPT head on a DINOv2 encoder) distilled from depth teachers "
        f"with the cross-context distillation of [Distill Any Depth]({PAPER}) by "
        "`distill-any-depth-pipeline`. It predicts relative disparity (affine-invariant: up "
        "to an unknown scale and shift; larger is nearer)."
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
        f"- Initial checkpoint (`--init`): `{job.init}`; kept "
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
        f"accumulation = {per_step} image(s) per step; input side {s.data.size}; {s.precision}",
        f"- Data mode `{s.data.mode}`; losses: shared-context {_on(s.loss.shared_context)} "
        f"(`{s.loss.norm_sc}`), local-global {_on(s.loss.local_global)} (λ {s.loss.lambda_lg}, "
        f"`{s.loss.norm_lg}`), feature alignment λ {s.loss.lambda_feat} (margin "
        f"{s.loss.feat_margin}), gradient λ {s.loss.lambda_grad} (`{s.loss.norm_grad}`)",
        f"- AdamW: decoder lr {s.optim.lr}, encoder × {s.optim.encoder_lr_ratio}, warm-up "
        f"{s.optim.warmup_steps} steps, poly power {s.optim.poly_power}, weight decay "
        f"{s.optim.weight_decay}; seed {s.seed}",
    ]
    return "\n".join(lines)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _world_size(run: RunDir) -> int | None:
    try:
        value = json.loads((run.root / "env.json").read_text()).get("world_size")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _dataset(root: Path) -> tuple[DatasetInfo | None, str | None]:
    """The run's dataset, or why it cannot be read now."""
    if not Path(root).is_dir():
        return None, f"The dataset directory `{root}` did not exist when this model was exported"
    try:
        return load_dataset(root), None
    except (OSError, ValueError, KeyError) as e:
        return None, f"The dataset `{root}` could not be read when this model was exported ({e})"


def _teachers(job: Job, info: DatasetInfo | None, problem: str | None) -> str:
    head = "## Teachers\n\n"
    if info is None:
        names = ", ".join(f"`{t}`" for t in job.teachers)
        return f"{head}Label columns {names}. {problem}: their provenance is not recorded here."
    rows = [
        "| column | teacher | adapter | weights | weights sha256 | output | precision | shards "
        "labelled |",
        "|---" * 8 + "|",
    ]
    for name in job.teachers:
        try:
            m = LabelColumn(info, name).manifest
        except (OSError, ValueError) as e:
            rows.append(f"| `{name}` | manifest unreadable: {e} |" + " |" * 6)
            continue
        done = sum(m.is_done(shard.name) for shard in info.shards)
        source = f"`{m.weights.get('source')}`"
        if m.weights.get("commit"):
            source += f" (revision `{m.weights['commit']}`)"
        rows.append(
            f"| `{name}` | {m.teacher} | {m.adapter} | {source} | `{m.weights.get('sha256')}` | "
            f"{m.output_kind} ({m.invariance}) | {m.precision} | {done}/{len(info.shards)} |"
        )
    return head + "\n".join(rows)


def _dataset_section(job: Job, info: DatasetInfo | None, problem: str | None) -> str:
    if info is None:
        return f"## Dataset\n\n{problem}: its image count and plan hash are not recorded here."
    params = info.raw.get("plan_params", {})
    plan = ", ".join(f"{k} {v}" for k, v in params.items())
    return (
        f"## Dataset\n\n- Path: `{job.dataset}`\n- Images: {info.num_samples} in "
        f"{len(info.shards)} shards\n- Crop plan hash: `{info.plan_hash}`\n- Plan: {plan}"
    )


def read_summary(path: Path) -> dict[str, Any]:
    """An `evaluation run` / `score` `summary.json` (a directory or the file) as plain JSON."""
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"--eval {path}: no summary.json (write one with `evaluation run --model MODEL "
            "--out DIR` and pass DIR)"
        )
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--eval {file}: not readable JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ValueError(f"--eval {file}: not an evaluation summary (no 'datasets')")
    return data


def _number(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:.4f}" if ok else "–"


def _evaluation(summaries: list[dict[str, Any]]) -> str:
    head = "## Evaluation\n\n"
    if not summaries:
        return (
            f"{head}Not evaluated at export (pass `evaluation run` directories with "
            "`student export --eval DIR`)."
        )
    labels = {k: k for k in (*METRICS, "rmse")}
    for summary in summaries:
        recorded = summary.get("metrics") or {}
        labels.update({k: v["label"] for k, v in recorded.items() if k in labels and "label" in v})
    columns = " | ".join(labels[key] for key in METRICS)
    head_row = f"| model | dataset | samples | {columns} | {labels['rmse']} |"
    rows = [head_row, "|---" * (4 + len(METRICS)) + "|"]
    alignments = set()
    for summary in summaries:
        model = summary.get("model") or {}
        name = model.get("name", "?")
        for dataset, entry in summary["datasets"].items():
            values = " | ".join(_number(entry.get(key)) for key in METRICS)
            scored = entry.get("scored", entry.get("samples", "?"))
            rows.append(
                f"| {name} | {dataset} | {scored} | {values} | {_number(entry.get('rmse'))} |"
            )
            alignments.add((entry.get("protocol") or {}).get("alignment"))
    how = "; ".join(sorted(a for a in alignments if a)) or "as recorded in each summary.json"
    return f"{head}Zero-shot, Marigold protocol ({how}); `evaluation run`:\n\n" + "\n".join(rows)


def _settings(job: Job) -> str:
    settings = yaml.safe_dump(to_dict(job.settings), sort_keys=False)
    teachers = ", ".join(job.teachers)
    return (
        "## All settings\n\n<details>\n<summary>resolved training settings "
        f"(teachers: {teachers})</summary>\n\n```yaml\n{settings}```\n\n</details>"
    )
