"""Labels that teach nothing: a batch without any valid label pixel is a bad step (like a NaN
loss: skipped, recorded, `max_bad_steps` in a row stop the run naming the keys), and a column of
unusable maps is refused before training starts."""

from __future__ import annotations

import itertools

import pytest
import torch
from data_helpers import constant, make_dataset, write_column
from train_helpers import FAST, read_metrics, runner

from student.cli import app
from student.config import LossSettings
from student.objective import Objective
from student.trainer import NO_LABELS, NonFiniteLoss, Trainer

NAN = float("nan")


def _batch(sc: torch.Tensor, tiles: torch.Tensor, tile_count: list[int]) -> dict:
    return {
        "sc": sc,
        "valid": torch.isfinite(sc),
        "tiles": tiles,
        "tile_count": torch.tensor(tile_count),
    }


def test_label_pixels_counts_the_valid_labels_the_terms_read():
    both = Objective(LossSettings(lambda_feat=0), n_teachers=1)
    sc_only = Objective(LossSettings(lambda_feat=0, local_global=False), n_teachers=1)
    lg_only = Objective(LossSettings(lambda_feat=0, shared_context=False), n_teachers=1)
    sc = torch.full((2, 1, 4, 4), NAN)
    tiles = torch.full((2, 3, 4, 4), NAN)
    assert int(both.label_pixels(_batch(sc, tiles, [1, 2]))) == 0
    tiles[0, 2, 0, 0] = 1.0  # a padding tile (sample 0 has 1 tile): not a label
    assert int(both.label_pixels(_batch(sc, tiles, [1, 2]))) == 0
    tiles[1, 1, 0, :2] = 1.0  # two pixels of a real tile
    assert int(both.label_pixels(_batch(sc, tiles, [1, 2]))) == 2
    assert int(sc_only.label_pixels(_batch(sc, tiles, [1, 2]))) == 0
    sc[0, 0, 1, 1] = 0.5
    assert int(sc_only.label_pixels(_batch(sc, tiles, [1, 2]))) == 1
    assert int(lg_only.label_pixels(_batch(sc, tiles, [1, 2]))) == 2
    batch = _batch(sc, tiles, [1, 2])
    batch["valid"] = torch.zeros_like(batch["valid"])  # masked out
    assert int(sc_only.label_pixels(batch)) == 0


def _spoil_labels(monkeypatch, spoiled) -> None:
    """Patch the trainer: the labels of micro-batch 1, 2, ... are NaN when `spoiled(i)` holds."""
    real, calls = Trainer.micro_step, itertools.count(1)

    def micro_step(self, batch, *args, **kwargs):
        if spoiled(next(calls)):
            batch = {**batch, "sc": batch["sc"] * NAN, "tiles": batch["tiles"] * NAN}
        return real(self, batch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "micro_step", micro_step)


def _train(run, dataset, init, *extra):
    args = ["train", "--out", str(run), "--dataset", str(dataset), "--teacher", "alpha"]
    args += ["--init", str(init), "--batch-size", "1", *FAST, *extra]
    return runner.invoke(app, args)


def test_a_batch_without_valid_labels_is_a_bad_step(train_setup, tmp_path, monkeypatch):
    _spoil_labels(monkeypatch, lambda call: call == 2 or call >= 5)
    dataset, init = train_setup
    run = tmp_path / "run"
    result = _train(run, dataset, init, "--steps", "10", "--set", "max_bad_steps=3")
    assert isinstance(result.exception, NonFiniteLoss)
    message = str(result.exception)
    assert "3 bad steps in a row at step 4, the last with no valid label pixel" in message
    records = read_metrics(run)
    assert [r["step"] for r in records if "skipped" not in r] == [1, 2, 3]
    skipped = [r for r in records if "skipped" in r]
    assert [(r["step"], r["skipped"]) for r in skipped] == [(2, NO_LABELS)] + [(4, NO_LABELS)] * 3
    assert all(r["keys"] and r["keys"][0] in message for r in skipped[-1:])  # the keys named


@pytest.fixture(scope="module")
def nan_column(tmp_path_factory):
    """A dataset whose column `alpha` holds only NaN maps."""
    ds = make_dataset(tmp_path_factory.mktemp("nan"))
    write_column(ds, "alpha", maps=constant(NAN))
    return ds


def test_train_refuses_a_column_of_unusable_maps(nan_column, train_setup, tmp_path):
    _, init = train_setup
    result = _train(tmp_path / "run", nan_column, init, "--steps", "2")
    assert result.exit_code == 2
    assert "label column 'alpha' (teacher fake:none;" in result.output
    assert "(100%) unusable (no finite value, or one value everywhere)" in result.output
    assert "--set data.max_unusable=0.5" in result.output


def test_training_on_nan_labels_anyway_stops_at_max_bad_steps(nan_column, train_setup, tmp_path):
    _, init = train_setup
    run = tmp_path / "run"
    extra = ["--steps", "10", "--set", "max_bad_steps=2", "--set", "data.max_unusable=1"]
    result = _train(run, nan_column, init, *extra)
    assert isinstance(result.exception, NonFiniteLoss)
    assert "no valid label pixel (last batch keys: ['img" in str(result.exception)
    records = read_metrics(run)
    assert [r.get("skipped") for r in records] == [NO_LABELS, NO_LABELS]
