"""The benchmarks with sharp ground truth, read in their release layouts: MPI Sintel (`.dpt`),
iBims-1 (16-bit PNG and masks) and Middlebury 2014 (PFM disparity and `calib.txt`). Keys and
order, units, invalid pixels, malformed files, `check_data` and a perfect prediction scored by
`evaluation score` (AbsRel 0, boundary F1 1)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from PIL import Image
from sharp_layouts import (
    IBIMS_LIST,
    MIDDLEBURY_CALIB,
    MIDDLEBURY_DEPTH,
    SINTEL_SKY,
    SQUARE,
    SharpSample,
    dpt_bytes,
    make_ibims,
    make_middlebury,
    make_sintel,
    mask_png,
    pfm_bytes,
)
from typer.testing import CliRunner

from evaluation.cli import app
from evaluation.datasets import (
    DATASET_LOADERS,
    DatasetError,
    check_data,
    open_dataset,
    parse_dataset_arg,
)
from evaluation.protocol import DATASETS, scoring_mask

MAKERS = {"sintel": make_sintel, "ibims": make_ibims, "middlebury2014": make_middlebury}
FORMS = {"dir": {}, "tar-in-folder": {"as_tar": True, "top": "release"}}


def assert_sample(got, want: SharpSample) -> None:
    assert got.key == want.key
    np.testing.assert_array_equal(got.rgb, want.rgb)
    assert got.depth.dtype == np.float32 and got.depth.shape == want.rgb.shape[:2]
    np.testing.assert_array_equal(got.depth, want.depth)  # exact, inf included
    if want.valid_mask is None:
        assert got.valid_mask is None
    else:
        assert got.valid_mask.dtype == np.bool_
        np.testing.assert_array_equal(got.valid_mask, want.valid_mask)


def assert_round_trip(ds, samples: list[SharpSample]) -> None:
    assert ds.keys() == [s.key for s in samples]
    for sample in samples:
        assert_sample(ds.load(sample.key), sample)
    scoring_only = ds.load(samples[-1].key, rgb=False)
    assert scoring_only.rgb is None
    np.testing.assert_array_equal(scoring_only.depth, samples[-1].depth)
    np.testing.assert_array_equal(ds.load_rgb(samples[0].key), samples[0].rgb)
    assert ds.inference_long_side is None


# --- MPI Sintel ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
def test_sintel_final_pass_every_frame_in_order(tmp_path, form):
    layout = make_sintel(tmp_path, **FORMS[form])
    ds = open_dataset(layout.arg())
    assert ds.keys() == [
        "training/final/alley_1/frame_0001",
        "training/final/alley_1/frame_0002",
        "training/final/market_2/frame_0001",
    ]
    assert_round_trip(ds, layout.samples)
    desc = json.loads(json.dumps(ds.describe()))
    assert desc["count"] == 3 and desc["expected_count"] == 1064
    assert desc["source"] == ("tar" if "tar" in form else "directory")
    assert desc["prefix"] == (f"{layout.top}/" if layout.top else "")
    assert "MPI-Sintel-depth-training-20150305.zip" in desc["layout"]


def test_sintel_clean_pass_depth_in_metres_and_the_sky_unscored(tmp_path):
    layout = make_sintel(tmp_path)
    ds = open_dataset(layout.arg(render_pass="clean"))
    assert_round_trip(ds, layout.clean)
    depth = ds.load("training/clean/alley_1/frame_0001").depth
    assert depth[SQUARE].max() == depth[SQUARE].min() == 3.0  # stored in metres
    assert depth[5, 0] == 12.5 and depth[0, 0] == np.float32(SINTEL_SKY)
    valid = scoring_mask(depth, DATASETS.get("sintel"), None)
    assert not valid[:2].any() and valid[2:].all()  # the sky lies beyond 70 m
    with pytest.raises(ValueError, match="render_pass"):
        parse_dataset_arg(f"sintel={layout.path},render_pass=albedo")


def test_sintel_split_list_of_the_other_pass_says_so(tmp_path):
    layout = make_sintel(tmp_path)
    split = tmp_path / "frames.txt"
    split.write_text("".join(f"{s.files['rgb']} {s.files['depth']}\n" for s in layout.clean))
    with pytest.raises(DatasetError, match="render_pass"):
        open_dataset(layout.arg(split=str(split)))
    ds = open_dataset(layout.arg(split=str(split), render_pass="clean"))
    assert ds.keys() == [s.key for s in layout.clean]


@pytest.mark.parametrize(
    "payload, message",
    [
        (struct.pack("<fii", 1.5, 32, 24) + bytes(32 * 24 * 4), "tag"),
        (dpt_bytes(np.ones((24, 32)))[:-4], "3080 bytes"),
        (dpt_bytes(np.ones((12, 32))), "expected the size of its image"),
        (b"PIEH", "4 bytes"),
    ],
    ids=["wrong-tag", "truncated", "other-size", "header-only"],
)
def test_sintel_malformed_dpt_names_the_file(tmp_path, payload, message):
    layout = make_sintel(tmp_path)
    sample = layout.samples[1]
    (layout.path / sample.files["depth"]).write_bytes(payload)
    ds = open_dataset(layout.arg())
    with pytest.raises(DatasetError, match=message) as err:
        ds.load(sample.key)
    assert sample.files["depth"].split("/")[-1] in str(err.value)


def test_sintel_needs_the_training_folder(tmp_path):
    layout = make_sintel(tmp_path)
    with pytest.raises(DatasetError, match="training/final/<scene>/frame_XXXX.png"):
        open_dataset(f"sintel={layout.path / 'training'}")


# --- iBims-1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("image_list", ["beside", "inside", None])
@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
def test_ibims_image_list_order_masks_and_metres(tmp_path, as_tar, image_list):
    layout = make_ibims(tmp_path, as_tar=as_tar, image_list=image_list)
    ds = open_dataset(layout.arg())
    names = list(IBIMS_LIST) if image_list else sorted(IBIMS_LIST)
    assert ds.keys() == [f"rgb/{n}" for n in names]
    assert_round_trip(ds, layout.samples)
    sample = ds.load("rgb/bathroom_02")
    assert sample.depth[0, 0] == pytest.approx(10.0, abs=1e-5)  # 13107 * 50 / 65535
    assert sample.depth[SQUARE] == pytest.approx(20.0, abs=1e-5)  # 26214 * 50 / 65535
    mask = sample.valid_mask
    assert not mask[21:, :8].any() and not mask[22:, 20:].any()  # invalid; transparent
    assert mask[:21].all() and mask.sum() == 24 * 32 - 3 * 8 - 2 * 12
    scored = scoring_mask(sample.depth, DATASETS.get("ibims"), mask)
    assert sample.depth[20, 4] == 0 and not scored[20, 4]  # no measurement
    assert scored.sum() == mask.sum() - 1
    desc = ds.describe()
    assert desc["expected_count"] == 100 and desc["count"] == 3
    assert desc["split_origin"] == ("dataset" if image_list else "discovered")


def test_ibims_missing_or_malformed_files_name_the_file(tmp_path):
    layout = make_ibims(tmp_path)
    root = layout.path / layout.top
    (root / "mask_transp" / "office_03.png").unlink()
    with pytest.raises(DatasetError, match=r"transparency masks missing.*office_03\.png"):
        open_dataset(layout.arg())
    (root / "mask_transp" / "office_03.png").write_bytes(mask_png(np.ones((12, 32), bool)))
    with pytest.raises(DatasetError, match=r"mask_transp.office_03\.png: 12x32"):
        open_dataset(layout.arg()).load("rgb/office_03")
    (root / "depth" / "corridor_01.png").write_bytes(mask_png(np.ones((24, 32), bool), "RGB"))
    with pytest.raises(DatasetError, match=r"corridor_01\.png.*16-bit greyscale PNG"):
        open_dataset(layout.arg()).load("rgb/corridor_01")
    (layout.path / "imagelist.txt").write_text("corridor_01\nkitchen_09\n")
    with pytest.raises(DatasetError, match=r"imagelist\.txt: 1 listed images.*kitchen_09"):
        open_dataset(layout.arg())


def test_ibims_takes_no_split_option(tmp_path):
    layout = make_ibims(tmp_path)
    with pytest.raises(ValueError, match="unknown option 'split' for ibims"):
        open_dataset(layout.arg(split=str(tmp_path / "list.txt")))


# --- Middlebury 2014 ----------------------------------------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
def test_middlebury2014_depth_from_calibration(tmp_path, form):
    layout = make_middlebury(tmp_path, **FORMS[form])
    ds = open_dataset(layout.arg())
    assert ds.keys() == ["Adirondack-perfect/im0", "Motorcycle-perfect/im0"]
    assert_round_trip(ds, layout.samples)  # one PFM little-endian, one big-endian
    for want in layout.samples:
        depth = ds.load(want.key).depth
        assert depth[0] == pytest.approx(MIDDLEBURY_DEPTH["top_row"])  # rows read bottom-up
        assert depth[5, 0] == pytest.approx(MIDDLEBURY_DEPTH["background"])
        assert depth[SQUARE] == pytest.approx(MIDDLEBURY_DEPTH["square"])
        assert np.isinf(depth[20:, 25:]).all() and np.isfinite(depth[:20]).all()
        assert not scoring_mask(depth, DATASETS.get("middlebury2014"), None)[20:, 25:].any()
    assert ds.describe()["expected_count"] == 23


def test_middlebury2014_is_not_the_built_in_sample(tmp_path):
    assert parse_dataset_arg("middlebury2014=/data/mb")[:2] == ("middlebury2014", "/data/mb")
    with pytest.raises(ValueError, match="needs a path"):
        parse_dataset_arg("middlebury2014")
    assert open_dataset("middlebury").keys() == ["motorcycle"]


def _calib_without(line: str) -> str:
    return "".join(f"{x}\n" for x in MIDDLEBURY_CALIB.splitlines() if not x.startswith(line))


@pytest.mark.parametrize(
    "file, payload, message",
    [
        ("calib.txt", _calib_without("baseline"), "calib.txt: cannot read 'baseline'"),
        ("calib.txt", MIDDLEBURY_CALIB.replace("width=32", "width=64"), "width 64, height 24"),
        ("calib.txt", MIDDLEBURY_CALIB.replace("1000.0 0 15.5", "1000.0 0"), "calib.txt"),
        ("disp0.pfm", b"PF\n32 24\n-1.0\n" + bytes(32 * 24 * 12), "colour PFM"),
        ("disp0.pfm", pfm_bytes(np.ones((24, 32)))[:-8], "3064 data bytes for 32x24"),
        ("disp0.pfm", b"P6\n32 24\n255\n", "no PFM header"),
        ("disp0.pfm", pfm_bytes(np.ones((12, 32))), "expected the size of its image"),
    ],
    ids=["no-baseline", "other-width", "bad-cam0", "colour", "truncated", "not-pfm", "size"],
)
def test_middlebury2014_malformed_files_name_the_file(tmp_path, file, payload, message):
    layout = make_middlebury(tmp_path)
    path = layout.path / "Motorcycle-perfect" / file
    path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    ds = open_dataset(layout.arg())
    with pytest.raises(DatasetError, match=message) as err:
        ds.load("Motorcycle-perfect/im0")
    assert f"Motorcycle-perfect/{file}" in str(err.value)


def test_middlebury2014_scene_without_calibration(tmp_path):
    layout = make_middlebury(tmp_path)
    (layout.path / "Adirondack-perfect" / "calib.txt").unlink()
    with pytest.raises(DatasetError, match=r"calibration files missing.*Adirondack-perfect"):
        open_dataset(layout.arg())


# --- all three ----------------------------------------------------------------------------


def test_the_three_are_registered_with_their_rules():
    assert set(MAKERS) <= set(DATASET_LOADERS.names()) & set(DATASETS.names())
    with pytest.raises(ValueError, match="valid: .*ibims.*middlebury2014.*sintel"):
        parse_dataset_arg("ibims1=/data/ibims")


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_rules_and_check_data(tmp_path, name):
    rules = DATASETS.get(name)
    assert rules.sharp_boundaries and rules.eval_crop is None
    layout = MAKERS[name](tmp_path)
    counts = check_data(layout.arg(), full=True)
    assert counts["name"] == name and counts["checked"] == counts["with_gt"] == len(layout.samples)
    assert counts["expected"] == {"sintel": 1064, "ibims": 100, "middlebury2014": 23}[name]
    assert counts["empty_gt"] == 0 and counts["shapes"] == {"24x32": len(layout.samples)}
    lo, hi = counts["depth_range_m"]
    assert rules.min_depth < lo <= hi < rules.max_depth
    assert check_data(layout.arg())["checked"] == 1


def _write_perfect_predictions(ds, out):
    for key in list(ds.keys()):
        depth = ds.load(key, rgb=False).depth
        path = out / "predictions" / ds.name / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.where(np.isfinite(depth), depth, 1.0).astype(np.float32))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_score_of_a_perfect_prediction(tmp_path, name):
    layout = MAKERS[name](tmp_path / "data")
    out = tmp_path / "eval"
    _write_perfect_predictions(open_dataset(layout.arg()), out)
    args = ["score", str(out), "--dataset", layout.arg(), "--pred-space", "depth"]
    result = CliRunner().invoke(app, [*args, "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "summary.json").read_text())["datasets"][name]
    assert entry["scored"] == len(layout.samples) and entry["abs_rel"] < 1e-6
    assert entry["delta1"] == 1.0 and entry["boundary_f1"] == pytest.approx(1.0)
    rows = json.loads((out / "per_sample.json").read_text())["samples"]
    assert [r["key"] for r in rows] == [s.key for s in layout.samples]
    assert all(r["boundary_f1"] == pytest.approx(1.0) for r in rows)


def test_a_blurred_edge_scores_below_one(tmp_path):
    """The fixtures' edges are what boundary F1 sees: smoothing the prediction costs F1."""
    layout = make_middlebury(tmp_path / "data")
    out = tmp_path / "eval"
    ds = open_dataset(layout.arg())
    _write_perfect_predictions(ds, out)
    for sample in layout.samples:
        path = out / "predictions" / ds.name / f"{sample.key}.npy"
        pred = np.load(path)
        img = Image.fromarray(pred).resize((8, 6), Image.BILINEAR).resize((32, 24))
        np.save(path, np.asarray(img, dtype=np.float32))
    args = ["score", str(out), "--dataset", layout.arg(), "--pred-space", "depth"]
    assert CliRunner().invoke(app, [*args, "--workers", "0", "--device", "cpu"]).exit_code == 0
    entry = json.loads((out / "summary.json").read_text())["datasets"]["middlebury2014"]
    assert 0.0 <= entry["boundary_f1"] < 0.9
