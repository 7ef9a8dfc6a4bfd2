"""`evaluation predict`: one prediction file per benchmark sample, resumable.

Layout of an evaluation directory (what `predict` writes, `score` reads):

    OUT/predictions.json                   the model, its prediction space, per dataset the
                                           inference resolution, counts and timing
    OUT/predictions/<dataset>/<key>.npy    float32 [h, w] raw prediction at the inference size

Each image is resized so its long side is the dataset's inference size (native for NYUv2, KITTI,
ScanNet; 756 for ETH3D; 640 for DIODE; `--processing-res` overrides) and passed to the model
(whose adapter applies its own input rule and returns that size). `score` resizes the prediction
bilinearly to the ground truth's size, so an ETH3D prediction is 1.5 MB, not 97 MB. Files are
published atomically; a re-run predicts only what is missing.

A model whose output depends on the focal length (`Predictor.takes_focal`: Depth Pro, a metric
student) is given each image's fx from the benchmark's intrinsics (`BenchmarkSample.intrinsics`),
scaled to the pixels of the image as passed (after the resize to the inference size); an image
without intrinsics gets None (the model's own assumption or estimate). predictions.json counts
per dataset how many images had a known focal length (`focal`: known, unknown).

A benchmark file that cannot be decoded stops the run with one line naming it; with
`--skip-bad-samples` the sample is skipped instead, listed under the dataset's `unreadable` in
predictions.json (and counted by `score`), never silently.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.datasets import BenchmarkDataset, DatasetError
from evaluation.models import Predictor
from pipeline.toolkit.atomic import publishing, write_json
from pipeline.toolkit.cpus import auto_workers
from pipeline.toolkit.devices import resolve_device
from pipeline.toolkit.environment import environment
from pipeline.toolkit.launch import Launch
from pipeline.toolkit.progress import progress_bar
from pipeline.toolkit.workers import exit_with_parent

PREDICTIONS_JSON = "predictions.json"
SCHEMA = 1


@dataclass(frozen=True)
class PredictSettings:
    processing_res: int | None = None
    """Long side the image is resized to before the model: unset (None) = each dataset's protocol
    size (native; ETH3D 756, DIODE 640), 0 = native resolution everywhere, R = long side R."""
    batch_size: int = 1
    """Images per forward pass (consecutive images of equal size are batched)."""
    skip_bad_samples: bool = False
    """Skip a sample whose benchmark files cannot be decoded, and count it (`unreadable` in
    predictions.json and summary.json); without it the first such file stops the run."""


def prediction_path(out: Path, dataset: str, key: str) -> Path:
    return Path(out) / "predictions" / dataset / f"{key}.npy"


def long_side_for(ds: BenchmarkDataset, settings: PredictSettings) -> int | None:
    """The long side images of `ds` are resized to, or None for native resolution."""
    if settings.processing_res is None:
        return ds.inference_long_side
    return settings.processing_res or None


def resized_shape(h: int, w: int, long_side: int | None) -> tuple[int, int]:
    if long_side is None or max(h, w) == long_side:
        return h, w
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def predict_images(
    predictor: Predictor,
    rgbs: list[np.ndarray],
    long_side: int | None,
    device: str,
    focals: list[float | None] | None = None,
) -> list[np.ndarray]:
    """Raw predictions `[h, w]` float32 at the inference size for equally sized uint8 RGB images
    `[H, W, 3]` (`(h, w)` = `resized_shape(H, W, long_side)`); `focals`: each image's fx in its
    own pixels (None: unknown), given to a model that takes the focal length in the pixels of
    the resized image."""
    h, w = rgbs[0].shape[:2]
    x = torch.from_numpy(np.stack(rgbs)).to(device).permute(0, 3, 1, 2).float().div_(255)
    size = resized_shape(h, w, long_side)
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    if predictor.takes_focal:
        given = [None if f is None else f * size[1] / w for f in focals or [None] * len(rgbs)]
        return list(predictor.predict_with_focal(x, given)[:, 0].float().cpu().numpy())
    return list(predictor.predict(x)[:, 0].float().cpu().numpy())


def save_prediction(path: Path, pred: np.ndarray) -> None:
    """Atomic `np.save` of a float32 map (`pipeline.toolkit.atomic`)."""
    with publishing(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(pred, dtype=np.float32))


@dataclass(frozen=True)
class Failed:
    """What a DataLoader worker hands back instead of raising a user error: torch would re-raise
    it in the main process wrapped in the worker's traceback; `check_item` raises it as it was."""

    key: str
    error: Exception


def catching(read: Any, key: str) -> Any:
    """`read(key)`, or `Failed(key, error)` for a user error (a bad file: the message names it)."""
    try:
        return read(key)
    except (ValueError, OSError) as error:  # DatasetError is a ValueError
        return Failed(key, error)


def check_item(item: Any, skip_bad: bool, unreadable: list[dict[str, str]]) -> bool:
    """True for a read item; a `Failed` one is recorded in `unreadable` (an undecodable
    benchmark sample, with `skip_bad`) or raised as the one-line error it was."""
    if not isinstance(item, Failed):
        return True
    error = item.error
    if not isinstance(error, DatasetError):
        raise error
    if not skip_bad:
        raise DatasetError(f"{error} (--skip-bad-samples skips and counts such samples)")
    unreadable.append({"key": item.key, "error": str(error)})
    return False


class _Images(torch.utils.data.Dataset):
    """(key, rgb, fx) of the samples still to predict, read in DataLoader workers (`Failed` for
    a sample that cannot be read); fx (pixels of rgb, None where unknown) only with `focal`."""

    def __init__(self, ds: BenchmarkDataset, keys: list[str], focal: bool = False) -> None:
        self.ds, self.keys, self.focal = ds, keys, focal

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[str, np.ndarray, float | None] | Failed:
        return catching(self._read, self.keys[i])

    def _read(self, key: str) -> tuple[str, np.ndarray, float | None]:
        if not self.focal:
            return key, self.ds.load_rgb(key), None
        sample = self.ds.load(key)  # the intrinsics come with the ground truth's record
        return key, sample.rgb, None if sample.intrinsics is None else sample.intrinsics.fx


def no_collate(x: Any) -> Any:
    """DataLoader `collate_fn` that passes each item through unchanged."""
    return x


def _batches(items, batch_size: int):
    """Consecutive (key, rgb, fx) of equal image size, at most `batch_size` at a time."""
    batch: list[tuple[str, np.ndarray, float | None]] = []
    for item in items:
        if batch and (len(batch) == batch_size or batch[0][1].shape != item[1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def predict_dataset(
    predictor: Predictor,
    ds: BenchmarkDataset,
    out: Path,
    settings: PredictSettings,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """Predict every sample of `ds` that has no prediction file yet, on `launch.device` with
    `launch.workers` reading the files; returns its record."""
    launch = launch or Launch()
    device = str(resolve_device(launch.device))
    keys = ds.keys()
    todo = [k for k in keys if not prediction_path(out, ds.name, k).exists()]
    long_side = long_side_for(ds, settings)
    loader = torch.utils.data.DataLoader(
        _Images(ds, todo, predictor.takes_focal),
        batch_size=None,
        num_workers=auto_workers(launch.workers) if len(todo) > 1 else 0,
        collate_fn=no_collate,
        worker_init_fn=exit_with_parent(),
    )
    start = time.perf_counter()
    shown = bool(todo) and launch.progress
    bar = progress_bar(len(todo), f"predict {ds.name}", "img", enabled=shown)
    unreadable: list[dict[str, str]] = []
    items = (item for item in loader if check_item(item, settings.skip_bad_samples, unreadable))
    known = 0
    for batch in _batches(items, settings.batch_size):
        focals = [fx for _, _, fx in batch]
        preds = predict_images(predictor, [rgb for _, rgb, _ in batch], long_side, device, focals)
        for (key, _, _), pred in zip(batch, preds, strict=True):
            save_prediction(prediction_path(out, ds.name, key), pred)
        known += sum(fx is not None for fx in focals)
        bar.update(len(batch))
    bar.close()
    seconds = time.perf_counter() - start
    done = len(todo) - len(unreadable)
    focal = {"focal": {"known": known, "unknown": done - known}} if predictor.takes_focal else {}
    return {
        "dataset": ds.describe(),
        "samples": len(keys),
        "predicted_now": done,
        "unreadable": unreadable,
        "processing_res": long_side or "native",
        "seconds": round(seconds, 3),
        "seconds_per_sample": round(seconds / done, 4) if done else None,
        **focal,
    }


def read_predictions_json(out: Path) -> dict[str, Any] | None:
    path = Path(out) / PREDICTIONS_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it to start over") from err


def check_same_model(out: Path, record: dict[str, Any] | None, predictor: Predictor) -> None:
    """Refuse to mix predictions of two models in one directory."""
    if record is None:
        return
    old = record.get("model", {})
    new = predictor.describe()
    same = old.get("teacher", {}).get("weights_sha256") == new["teacher"]["weights_sha256"]
    if not same or old.get("pred_space") != new["pred_space"]:
        raise ValueError(
            f"{out} holds predictions of {old.get('spec')!r} (other weights); "
            f"use another --out for {new['spec']!r}"
        )


def predict(
    predictor: Predictor,
    datasets: list[BenchmarkDataset],
    out: Path,
    settings: PredictSettings,
    launch: Launch | None = None,
) -> dict[str, Any]:
    """Predict every dataset into `out`, updating `predictions.json` after each dataset (it
    records the settings and the precision, which the predictions depend on)."""
    launch = launch or Launch()
    out = Path(out)
    record = read_predictions_json(out)
    check_same_model(out, record, predictor)
    record = record or {"schema": SCHEMA, "datasets": {}}
    record.update(
        model=predictor.describe(),
        pred_space=predictor.pred_space,
        settings={**asdict(settings), "precision": launch.precision},
        versions=environment(),
    )
    write_json(out / PREDICTIONS_JSON, record)  # first: a killed run still names its model
    for ds in datasets:
        entry = predict_dataset(predictor, ds, out, settings, launch)
        before = (record["datasets"].get(ds.name) or {}).get("focal")
        if "focal" in entry and before:  # a resumed run: the images predicted before count too
            entry["focal"] = {k: entry["focal"][k] + before.get(k, 0) for k in entry["focal"]}
        record["datasets"][ds.name] = entry
        write_json(out / PREDICTIONS_JSON, record)
    return record
