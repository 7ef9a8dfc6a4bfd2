"""Shared-context, local-global and total losses."""

from __future__ import annotations

import math

import pytest
import torch

from student.data.samples import flip_boxes, pad_tiles
from student.losses import (
    gradient_matching,
    local_global_gradient,
    local_global_loss,
    normalized_l1,
    shared_context_loss,
    total_loss,
)

PRED = 64  # the student's prediction side for a region (560 in training)
TILE = 112  # native tile side in image pixels (560 in training)
LABEL = 96  # the teacher's label side for a tile


def depth(x: torch.Tensor, y: torch.Tensor, phase: float = 0.0) -> torch.Tensor:
    """A smooth disparity field over original image pixel coordinates."""
    return 1.0 + 0.004 * x + 0.002 * y + 0.3 * torch.sin(x / 40 + phase) * torch.cos(y / 30)


def sample_box(box, rows: int, cols: int, phase: float = 0.0) -> torch.Tensor:
    """The field at the pixel centers of a `rows × cols` grid covering `box`."""
    x0, y0, x1, y1 = (float(v) for v in box)
    xs = x0 + (torch.arange(cols, dtype=torch.float64) + 0.5) * (x1 - x0) / cols
    ys = y0 + (torch.arange(rows, dtype=torch.float64) + 0.5) * (y1 - y0) / rows
    return depth(xs[None, :], ys[:, None], phase)


def region_and_tiles(x0: int, y0: int, side: int, steps: list[int], phase: float = 0.0):
    region = [x0, y0, x0 + side, y0 + side]
    boxes = [[x0 + dx, y0 + dy, x0 + dx + TILE, y0 + dy + TILE] for dy in steps for dx in steps]
    pred = sample_box(region, PRED, PRED, phase)
    labels = torch.stack([sample_box(b, LABEL, LABEL, phase) for b in boxes])
    return pred, labels, torch.tensor(boxes, dtype=torch.float64), torch.tensor(region)


def on_tiles(fn, pred, labels, boxes, regions, **kwargs):
    """`fn` (`local_global_loss` or `_gradient`) of per-sample tile lists `[T_b, h, w]` and boxes
    `[T_b, 4]`, given in the training batch's padded form (`pad_tiles`, as `collate` pads)."""
    tiles, padded_boxes, count = pad_tiles(labels, boxes)
    return fn(pred, tiles, padded_boxes, regions, count, **kwargs)


def lg_loss(pred, labels, boxes, regions, **kwargs):
    return on_tiles(local_global_loss, pred, labels, boxes, regions, **kwargs)


def lg_gradient(pred, labels, boxes, regions, **kwargs):
    return on_tiles(local_global_gradient, pred, labels, boxes, regions, **kwargs)


def batch_of_two():
    """Sample 0: 4 tiles of a 200-pixel region; sample 1: 2 tiles of a 160-pixel region."""
    p0, l0, b0, r0 = region_and_tiles(30, 10, 200, [0, 88])
    p1, l1, b1, r1 = region_and_tiles(5, 40, 160, [0, 48], phase=1.0)
    l1, b1 = l1[:2], b1[:2]
    return torch.stack([p0, p1]), [l0, l1], [b0, b1], torch.stack([r0, r1])


@pytest.mark.parametrize("norm", ["global", "hybrid", "local", "none"])
def test_consistent_tiles_give_near_zero_and_wrong_mapping_does_not(norm):
    pred, labels, boxes, regions = batch_of_two()
    good = lg_loss(pred, labels, boxes, regions, norm=norm)
    shifted = [b + torch.tensor([25.0, 15.0, 25.0, 15.0], dtype=torch.float64) for b in boxes]
    wrong = lg_loss(pred, labels, shifted, regions, norm=norm)
    scale = 1.0 if norm != "none" else 0.1  # raw disparity units for `none`
    assert good.item() < 0.05 * scale  # resampling differences only (bilinear vs area)
    assert wrong.item() > 20 * good.item() and wrong.item() > 0.1 * scale


def test_exact_box_mapping_beats_one_pixel_shifts():
    pred, labels, boxes, regions = batch_of_two()
    good = lg_loss(pred, labels, boxes, regions, norm="global")
    for shift in ([1.0, 0, 1.0, 0], [-1.0, 0, -1.0, 0], [0, 1.0, 0, 1.0], [0, -1.0, 0, -1.0]):
        moved = [b + torch.tensor(shift, dtype=torch.float64) for b in boxes]
        assert lg_loss(pred, labels, moved, regions, norm="global") > 1.5 * good


def test_padding_is_ignored_and_samples_weigh_the_same():
    pred, labels, boxes, regions = batch_of_two()
    tiles, padded_boxes, count = pad_tiles(labels, boxes)
    assert tiles.shape == (2, 4, LABEL, LABEL) and count.tolist() == [4, 2]
    assert (tiles[1, 2:] == 0).all() and (padded_boxes[1, 2:] == 0).all()
    base = local_global_loss(pred, tiles, padded_boxes, regions, count)
    # whatever the padding holds (zeros as collate writes them, NaN, a valid tile) is ignored
    tiles[1, 2:], padded_boxes[1, 2:] = float("nan"), float("nan")
    assert torch.equal(local_global_loss(pred, tiles, padded_boxes, regions, count), base)
    tiles[1, 2:], padded_boxes[1, 2:] = tiles[0, :2], padded_boxes[0, :2]
    assert torch.equal(local_global_loss(pred, tiles, padded_boxes, regions, count), base)
    # per-sample mean, then batch mean: sample 1's two tiles weigh as much as sample 0's four
    per_sample = [
        lg_loss(pred[i : i + 1], [labels[i]], [boxes[i]], regions[i : i + 1]) for i in range(2)
    ]
    assert torch.allclose(base, (per_sample[0] + per_sample[1]) / 2)


def test_tile_gradient_term_matches_consistent_tiles_and_is_per_tile_invariant():
    pred, labels, boxes, regions = batch_of_two()
    good = lg_gradient(pred, labels, boxes, regions)
    shifted = [b + torch.tensor([25.0, 15.0, 25.0, 15.0], dtype=torch.float64) for b in boxes]
    wrong = lg_gradient(pred, labels, shifted, regions)
    assert good.item() < 0.1 and wrong.item() > 15 * good.item()  # resampling differences only
    changed = [labels[0].clone(), labels[1]]
    changed[0][1] = 3.0 * changed[0][1] - 2.0  # each tile is normalized on its own
    assert torch.allclose(lg_gradient(pred, changed, boxes, regions), good, rtol=1e-4)


def test_tile_gradient_term_of_an_aligned_tile_is_gradient_matching_of_the_crop():
    """A tile box on whole prediction pixels, label at that size: the crop is exact."""
    field = sample_box([0, 0, 64, 64], PRED, PRED)[None]  # prediction pixel = image pixel
    label = sample_box([16, 8, 48, 40], 32, 32, phase=0.7)  # another field under the tile
    box = torch.tensor([[16.0, 8.0, 48.0, 40.0]], dtype=torch.float64)
    got = lg_gradient(field, [label[None]], [box], [[0.0, 0.0, 64.0, 64.0]])
    want = gradient_matching(field[:, 8:40, 16:48], label[None])
    assert got.item() > 0.01 and torch.allclose(got, want, rtol=1e-6)
    empty = lg_gradient(field, [label[None][:0]], [box[:0]], [[0.0, 0.0, 64.0, 64.0]])
    assert empty.item() == 0


def test_four_d_prediction_and_gradients():
    pred, labels, boxes, regions = batch_of_two()
    pred = pred[:, None].clone().float().requires_grad_()
    loss = lg_loss(pred, [lab.float() for lab in labels], boxes, regions)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_each_tile_normalized_on_its_own():
    """Scaling one tile's label by any a > 0 and shifting it leaves the loss unchanged."""
    pred, labels, boxes, regions = batch_of_two()
    base = lg_loss(pred, labels, boxes, regions, norm="hybrid")
    changed = [labels[0].clone(), labels[1]]
    changed[0][1] = 3.0 * changed[0][1] - 2.0
    moved = lg_loss(pred, changed, boxes, regions, norm="hybrid")
    assert torch.allclose(base, moved, rtol=1e-4)


def test_the_local_global_loss_is_unchanged_by_a_flip_of_everything():
    pred, labels, boxes, regions = batch_of_two()
    width = torch.tensor([260.0, 240.0])  # original image widths of the two samples
    base = lg_loss(pred, labels, boxes, regions)
    flipped = lg_loss(
        pred.flip(-1),
        [lab.flip(-1) for lab in labels],
        [flip_boxes(b, w) for b, w in zip(boxes, width, strict=True)],
        flip_boxes(regions, width),
    )
    assert torch.allclose(base, flipped, rtol=1e-5, atol=1e-8)


def test_no_tiles_gives_zero_with_gradient():
    pred = torch.rand(2, PRED, PRED, requires_grad=True)
    empty = [torch.zeros(0, LABEL, LABEL), torch.zeros(0, LABEL, LABEL)]
    boxes = [torch.zeros(0, 4), torch.zeros(0, 4)]
    loss = lg_loss(pred, empty, boxes, [[0, 0, 100, 100]] * 2)
    loss.backward()
    assert loss.item() == 0.0 and (pred.grad == 0).all()


def test_the_local_global_loss_refuses_mismatched_batches():
    pred, labels, boxes, regions = batch_of_two()
    tiles, padded_boxes, count = pad_tiles(labels, boxes)
    with pytest.raises(ValueError, match="region_box"):
        local_global_loss(pred, tiles, padded_boxes, regions[:1], count)
    with pytest.raises(ValueError, match="tiles"):
        local_global_loss(pred, tiles[:1], padded_boxes, regions, count)
    with pytest.raises(ValueError, match=r"tiles must be \[2, T, h, w\]"):  # the lists: refused
        local_global_loss(pred, labels, boxes, regions, count)
    with pytest.raises(ValueError, match=r"tile_boxes must be \[2, 4, 4\]"):
        local_global_loss(pred, tiles, padded_boxes[:, :2], regions, count)
    with pytest.raises(ValueError, match=r"tile_count\[1\] = 5 is not in \[0, 4\]"):
        local_global_loss(pred, tiles, padded_boxes, regions, torch.tensor([4, 5]))
    with pytest.raises(ValueError, match=r"tile_count must be \[2\]"):
        local_global_loss(pred, tiles, padded_boxes, regions, count[:1])
    bad = [b.clone() for b in boxes]
    bad[0][0, 2] = bad[0][0, 0]
    with pytest.raises(ValueError, match="tile_boxes"):
        lg_loss(pred, labels, bad, regions)


def test_shared_context_is_normalized_l1():
    pred, labels, _, _ = batch_of_two()
    label = pred**2
    for norm in ("hybrid", "none"):
        expected = normalized_l1(pred, label, None, norm)
        assert torch.equal(shared_context_loss(pred, label, norm=norm), expected)


def test_the_total_loss_weighs_each_term_as_configured():
    values = [("sc", 1.0), ("lg", 2.0), ("feat", 3.0), ("grad", 4.0)]
    terms = {name: torch.tensor(v) for name, v in values}
    out = total_loss(terms)
    assert math.isclose(out["loss"].item(), 1.0 + 0.5 * 2.0 + 1.0 * 3.0 + 2.0 * 4.0)
    assert set(out) == {"sc", "lg", "feat", "grad", "loss"}
    assert math.isclose(total_loss(terms, (1.0, 0.0, 0.0))["loss"].item(), 3.0)
    assert math.isclose(total_loss(terms, {"grad": 0.0})["loss"].item(), 5.0)
    assert math.isclose(total_loss({"sc": terms["sc"]})["loss"].item(), 1.0)
    with pytest.raises(ValueError, match="terms"):
        total_loss({"bogus": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="weights"):
        total_loss(terms, (1.0, 2.0))
    with pytest.raises(ValueError, match="weights"):
        total_loss(terms, {"sc": 2.0})


def test_half_precision_labels_and_bf16_prediction():
    pred, labels, boxes, regions = batch_of_two()
    base = lg_loss(pred.float(), [lab.float() for lab in labels], boxes, regions)
    low = lg_loss(pred.to(torch.bfloat16), [lab.half() for lab in labels], boxes, regions)
    assert low.dtype == torch.float32
    assert torch.allclose(low, base, rtol=0.2, atol=0.01)  # bf16 prediction: ~3 digits


@pytest.mark.parametrize("shared_context", [True, False])
def test_training_gradient_term_uses_the_labels_of_the_enabled_terms(shared_context):
    """Without L_sc (the local-global-only ablations) the region label supervises nothing."""
    from student.config import TrainSettings
    from student.losses.cross_context import local_global_gradient as tile_gradient
    from student.objective import Objective

    pred, labels, boxes, regions = region_and_tiles(0, 0, 200, [0, 88])
    scale = PRED / 200  # the batch's boxes are in prediction pixels of the 560-like region
    batch = {
        "sc": pred[None].float(),
        "valid": torch.ones(1, PRED, PRED, dtype=torch.bool),
        "tiles": labels[None].float(),
        "tile_boxes": (boxes * scale)[None],
        "tile_count": torch.tensor([4]),
    }
    s = TrainSettings()
    s.loss.shared_context = shared_context
    noisy = dict(batch, sc=batch["sc"] + 0.3 * torch.randn_like(batch["sc"]))
    out = {"pred": pred[None].float()}
    objective = Objective(s.loss, n_teachers=1)
    clean, perturbed = (objective(out, b) for b in (batch, noisy))
    if shared_context:
        assert perturbed["grad"] > 10 * clean["grad"]
    else:
        assert "sc" not in clean and torch.equal(clean["grad"], perturbed["grad"])
        region = [[0.0, 0.0, float(PRED), float(PRED)]]
        want = tile_gradient(out["pred"], batch["tiles"], batch["tile_boxes"], region, [4])
        assert torch.equal(clean["grad"], want)


def test_training_terms_of_a_batch_without_tiles_still_reach_the_prediction():
    """Under DDP every rank must give every parameter a gradient, even with no tile."""
    from student.config import TrainSettings
    from student.objective import Objective

    s = TrainSettings()
    s.loss.shared_context = False
    pred = torch.rand(1, 1, 8, 8, requires_grad=True)
    batch = {
        "sc": torch.rand(1, 1, 8, 8),
        "valid": torch.ones(1, 1, 8, 8, dtype=torch.bool),
        "tiles": torch.full((1, 1, 4, 4), float("nan")),
        "tile_boxes": torch.full((1, 1, 4), float("nan"), dtype=torch.float64),
        "tile_count": torch.tensor([0]),
    }
    terms = Objective(s.loss, n_teachers=1)({"pred": pred}, batch)
    assert terms["lg"].item() == 0 and terms["grad"].item() == 0
    terms["loss"].backward()
    assert pred.grad is not None
