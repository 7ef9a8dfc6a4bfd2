"""`student.data.samples` and `augment`: a sample's tensors, flips, tile boxes, padding, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import ramp_image, x_ramp

from pipeline.dataset.plan import PlanParams, plan_image, views
from student.data.augment import AugmentSettings, gaussian_blur, photometric
from student.data.samples import (
    baseline_sample,
    collate,
    cross_context_sample,
    flip_boxes,
    map_tile_boxes,
    pad_tiles,
)

S = 112
STRONG = AugmentSettings(jitter_p=1.0, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2)


def setup(h: int = 700, w: int = 900):
    rgb = ramp_image(h, w, 0)
    entry = plan_image("k", h, w, PlanParams())
    boxes = {"full": None, **dict(views(entry))}
    names: list[str] = []
    fn = x_ramp(56)

    def read(name: str) -> np.ndarray:
        names.append(name)
        return fn("k", entry, name, boxes[name])

    return rgb, entry, read, names


def sample(flip: bool, region: int = 0, augment=None, seed: int = 0, h: int = 700, w: int = 900):
    rgb, entry, read, names = setup(h, w)
    out = cross_context_sample(
        rgb, entry, read, region=region, flip=flip, rng=np.random.default_rng(seed), size=S,
        augment=augment or AugmentSettings.none(), key="k", teacher="t",
    )  # fmt: skip
    return out, entry, names


def test_shapes_dtypes_and_only_used_maps_read() -> None:
    out, entry, names = sample(flip=False, region=1)
    tiles = len(entry["regions"][1]["tiles"])
    assert tiles == 4
    assert names == ["r1.sc"] + [f"r1.t{j}" for j in range(tiles)]
    expect = {
        "image": ((3, S, S), torch.float32),
        "image_aug": ((3, S, S), torch.float32),
        "sc": ((1, S, S), torch.float32),
        "valid": ((1, S, S), torch.bool),
        "tiles": ((tiles, S, S), torch.float32),
        "tile_boxes": ((tiles, 4), torch.float32),
    }
    for name, (shape, dtype) in expect.items():
        assert tuple(out[name].shape) == shape and out[name].dtype == dtype, name
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0
    assert out["valid"].all()
    assert (out["key"], out["teacher"], out["region"], out["flip"]) == ("k", "t", 1, False)


@pytest.mark.parametrize("flip", [False, True])
def test_labels_follow_the_image_through_crop_and_flip(flip: bool) -> None:
    """The image's red channel encodes x and every label holds x: they must agree pixel-wise."""
    out, _, _ = sample(flip=flip)
    x_from_image = out["image"][0].numpy() * 900  # R = (x + 0.5) / W at pixel centres
    sc = out["sc"][0].numpy()
    inner = slice(2, S - 2)
    assert np.abs(x_from_image[:, inner] - sc[:, inner]).max() < 3.0
    row = sc.mean(0)
    assert (np.diff(row[inner]) < 0).all() if flip else (np.diff(row[inner]) > 0).all()
    # each tile label matches the region label inside its mapped box
    for tile, box in zip(out["tiles"].numpy(), out["tile_boxes"].numpy(), strict=True):
        x0, _, x1, _ = box
        cols = np.arange(2, S - 2)
        u = x0 + (cols + 0.5) * (x1 - x0) / S  # tile pixel centres in the region's S frame
        expected = np.interp(u - 0.5, np.arange(S), row)
        assert np.abs(tile.mean(0)[cols] - expected).max() < 1.5


def test_tile_boxes_mapping_and_mirroring() -> None:
    region = [100, 50, 1100, 1050]
    tiles = [[100, 50, 660, 610], [540, 490, 1100, 1050]]
    boxes = map_tile_boxes(region, tiles, 560, flip=False)
    np.testing.assert_allclose(boxes, [[0, 0, 313.6, 313.6], [246.4, 246.4, 560, 560]], atol=1e-4)
    flipped = map_tile_boxes(region, tiles, 560, flip=True)
    np.testing.assert_allclose(flipped, [[246.4, 0, 560, 313.6], [0, 246.4, 313.6, 560]], atol=1e-4)
    assert boxes.dtype == np.float32


@pytest.mark.parametrize("h,w", [(700, 900), (480, 640), (300, 420)])
def test_tile_boxes_inside_the_frame(h: int, w: int) -> None:
    for flip in (False, True):
        out, entry, _ = sample(flip=flip, h=h, w=w)
        boxes = out["tile_boxes"]
        assert (boxes >= 0).all() and (boxes <= S + 1e-4).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        if min(h, w) <= 560:  # a region no larger than a tile is its own single tile
            assert boxes.tolist() == [[0.0, 0.0, float(S), float(S)]]


def test_photometric_augmentation_changes_only_image_aug() -> None:
    plain, _, _ = sample(flip=True, augment=AugmentSettings.none(), seed=3)
    strong, _, _ = sample(flip=True, augment=STRONG, seed=3)
    for name in ("image", "sc", "tiles", "tile_boxes", "valid"):
        assert torch.equal(plain[name], strong[name]), name
    assert torch.equal(plain["image_aug"], plain["image"])
    assert not torch.allclose(strong["image_aug"], strong["image"], atol=1e-2)
    again, _, _ = sample(flip=True, augment=STRONG, seed=3)
    assert torch.equal(again["image_aug"], strong["image_aug"])  # seeded


def test_photometric_range_and_blur() -> None:
    img = torch.rand(3, 32, 32)
    for seed in range(5):
        out = photometric(img, STRONG, np.random.default_rng(seed))
        assert out.shape == img.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    blurred = gaussian_blur(img, 2.0)
    assert blurred.shape == img.shape and blurred.std() < img.std()
    with pytest.raises(ValueError, match="hue"):
        AugmentSettings(hue=0.7)


def test_baseline_uses_full_label_and_whole_image() -> None:
    rgb, _, read, names = setup()
    out = baseline_sample(
        rgb, read, flip=False, rng=np.random.default_rng(0), size=S,
        augment=AugmentSettings.none(),
    )  # fmt: skip
    assert names == ["full"]
    assert tuple(out["tiles"].shape) == (0, S, S) and tuple(out["tile_boxes"].shape) == (0, 4)
    assert out["region"] == -1
    expected = (np.arange(S) + 0.5) * 900 / S  # the whole width squashed onto S columns
    row = out["sc"][0].numpy().mean(0)
    assert np.abs(row[2:-2] - expected[2:-2]).max() < 3.0
    assert np.abs(out["image"][0].numpy().mean(0) * 900 - expected)[2:-2].max() < 3.0


def test_collate_pads_tiles() -> None:
    a, _, _ = sample(flip=False, h=700, w=900)  # 4 tiles
    b, _, _ = sample(flip=True, h=300, w=420)  # 1 tile
    batch = collate([a, b])
    assert tuple(batch["image"].shape) == (2, 3, S, S)
    assert tuple(batch["sc"].shape) == (2, 1, S, S) and batch["valid"].dtype == torch.bool
    assert tuple(batch["tiles"].shape) == (2, 4, S, S)
    assert tuple(batch["tile_boxes"].shape) == (2, 4, 4)
    assert batch["tile_count"].tolist() == [4, 1]
    assert torch.equal(batch["tiles"][1, 0], b["tiles"][0])
    assert (batch["tiles"][1, 1:] == 0).all() and (batch["tile_boxes"][1, 1:] == 0).all()
    assert batch["flip"].tolist() == [False, True] and batch["region"].tolist() == [0, 0]
    assert batch["key"] == ["k", "k"] and batch["teacher"] == ["t", "t"]
    with pytest.raises(ValueError, match="empty"):
        collate([])


@pytest.mark.parametrize("flip", [False, True])
def test_reduced_jpeg_decode_keeps_geometry(flip: bool) -> None:
    import io

    from PIL import Image

    from student.data.shards import decode_reduced

    rgb, entry, read, _ = setup()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    side = entry["regions"][0]["box"][2] - entry["regions"][0]["box"][0]
    request = (-(-900 * S // side), -(-700 * S // side))
    small, d, size = decode_reduced(buf.getvalue(), request)
    assert d == 4 and size == [700, 900] and small.shape == (175, 225, 3)
    full, d1, _ = decode_reduced(buf.getvalue(), (900, 700))
    assert d1 == 1 and full.shape == (700, 900, 3)
    args = {"region": 0, "flip": flip, "size": S, "augment": AugmentSettings.none()}
    exact = cross_context_sample(full, entry, read, rng=np.random.default_rng(0), **args)
    fast = cross_context_sample(
        small, entry, read, rng=np.random.default_rng(0), reduction=d, **args
    )
    diff = (exact["image"] - fast["image"]).abs()
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.08
    inner = slice(2, S - 2)
    for sample in (exact, fast):  # red encodes x: no shift between image and labels
        x_from_image = sample["image"][0].numpy().mean(0) * 900
        error = x_from_image[inner] - sample["sc"][0].numpy().mean(0)[inner]
        assert np.abs(error).max() < 3.0 and abs(float(error.mean())) < 1.0


def test_tile_subset() -> None:
    rgb, entry, read, names = setup()
    out = cross_context_sample(
        rgb, entry, read, region=0, flip=True, rng=np.random.default_rng(0), size=S,
        augment=AugmentSettings.none(), tile_indices=[1, 3],
    )  # fmt: skip
    assert names == ["r0.sc", "r0.t1", "r0.t3"]
    tiles = entry["regions"][0]["tiles"]
    expected = map_tile_boxes(entry["regions"][0]["box"], [tiles[1], tiles[3]], S, True)
    np.testing.assert_array_equal(out["tile_boxes"].numpy(), expected)


def test_flip_boxes_round_trip():
    boxes = torch.tensor([[[10, 5, 50, 40], [0, 0, 100, 20]], [[3, 4, 7, 9], [1, 1, 2, 2]]])
    widths = torch.tensor([100, 30])
    once = flip_boxes(boxes, widths)
    assert once[0, 0].tolist() == [50, 5, 90, 40]
    assert once[1, 0].tolist() == [23, 4, 27, 9]
    assert torch.equal(flip_boxes(once, widths), boxes.double())
    assert flip_boxes([10, 5, 50, 40], 100).tolist() == [50, 5, 90, 40]
    assert flip_boxes([[1, 2, 3, 4]], 10.5).tolist() == [[7.5, 2, 9.5, 4]]  # not truncated
    with pytest.raises(ValueError, match="boxes"):
        flip_boxes([1, 2, 3], 10)


def test_pad_tiles_keeps_dtypes_and_refuses_what_does_not_stack() -> None:
    tiles = [torch.rand(2, 8, 8, dtype=torch.float16), torch.rand(0, 8, 8, dtype=torch.float16)]
    boxes = [torch.rand(2, 4, dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64)]
    padded, padded_boxes, count = pad_tiles(tiles, boxes)
    assert padded.dtype == torch.float16 and padded_boxes.dtype == torch.float64
    assert padded.shape == (2, 2, 8, 8) and count.tolist() == [2, 0] and count.dtype == torch.int64
    assert torch.equal(padded[0], tiles[0]) and (padded[1] == 0).all()
    with pytest.raises(ValueError, match="one size"):
        pad_tiles([torch.zeros(1, 8, 8), torch.zeros(1, 4, 4)], [torch.zeros(1, 4)] * 2)
    with pytest.raises(ValueError, match="sample 0: 2 tiles but 1 tile boxes"):
        pad_tiles([torch.zeros(2, 8, 8)], [torch.zeros(1, 4)])
    with pytest.raises(ValueError, match="one entry per sample"):
        pad_tiles([torch.zeros(2, 8, 8)], [])
