"""Benchmark loaders: every Marigold layout as a directory and as a tar, split lists, errors."""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import pickle
import shutil
import tarfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from eval_layouts import (
    KITTI_MARKER,
    KITTI_TOP,
    LAYOUT_NAMES,
    SPLIT_NAME,
    WrittenSample,
    make_layout,
    png_bytes,
    write_layout,
    write_tar,
)

from evaluation.datasets import (
    DATASET_LOADERS,
    DatasetError,
    check_data,
    open_dataset,
    parse_dataset_arg,
)
from evaluation.protocol import DATASETS

FORMS = {
    "dir": {},
    "dir-top": {"top": "data"},
    "tar": {"as_tar": True},
    "tar-top": {"as_tar": True, "top": "archive", "dot_slash": True},
}


def assert_sample(got, want: WrittenSample) -> None:
    assert got.key == want.key
    assert got.rgb.dtype == np.uint8 and got.rgb.shape == want.rgb.shape
    np.testing.assert_array_equal(got.rgb, want.rgb)
    assert got.depth.dtype == np.float32 and got.depth.shape == want.rgb.shape[:2]
    np.testing.assert_array_equal(got.depth, want.depth)  # exact, inf included
    if want.valid_mask is None:
        assert got.valid_mask is None
    else:
        assert got.valid_mask.dtype == np.bool_
        np.testing.assert_array_equal(got.valid_mask, want.valid_mask)


@pytest.mark.parametrize("with_split", [True, False], ids=["split", "discovered"])
@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_each_layout_written_is_read_back_sample_for_sample(tmp_path, name, form, with_split):
    layout = make_layout(name, tmp_path, n=2 if name == "kitti" else 3, **FORMS[form])
    ds = open_dataset(layout.arg(with_split=with_split))
    want = layout.samples if with_split else layout.sorted_samples()
    assert ds.keys() == [s.key for s in want] and len(ds) == len(want)
    for sample in want:
        assert_sample(ds.load(sample.key), sample)
    np.testing.assert_array_equal(ds.load_rgb(want[0].key), want[0].rgb)  # KITTI: cropped
    ground_truth_only = ds.load(want[-1].key, rgb=False)  # for scoring: no image decode
    assert ground_truth_only.rgb is None
    np.testing.assert_array_equal(ground_truth_only.depth, want[-1].depth)
    desc = json.loads(json.dumps(ds.describe()))
    assert desc["name"] == name and desc["root"] == str(layout.path)
    assert desc["source"] == ("tar" if "tar" in form else "directory")
    assert desc["prefix"] == layout.prefix
    assert desc["split_origin"] == ("option" if with_split else "discovered")
    assert desc["split"] == (str(layout.split) if with_split else "discovered")
    assert desc["count"] == len(want) and len(desc["skipped"]) == len(layout.skipped)
    assert ds.inference_long_side == {"eth3d": 756, "diode": 640}.get(name)


def test_registry_matches_protocol_rules():
    assert DATASET_LOADERS.names() == DATASETS.names()


def test_nyu_reads_raw_depth_not_filled(tmp_path):
    layout = make_layout("nyu", tmp_path, n=1)
    sample = open_dataset(layout.arg()).load("test/bathroom/rgb_0000")
    assert not np.all(sample.depth == 5.0)  # the filled map is constant 5000
    assert sample.depth.shape == (48, 64) and sample.valid_mask is None


def test_kitti_crop_offsets_and_lines_without_gt(tmp_path):
    layout = make_layout("kitti", tmp_path, n=1)
    ds = open_dataset(layout.arg())
    sample = ds.load(layout.samples[0].key)
    assert sample.rgb.shape == (352, 1216, 3) and sample.depth.shape == (352, 1216)
    (row, col), value = KITTI_MARKER
    assert KITTI_TOP == 23 and sample.depth[row - 23, col - 13] == np.float32(value / 256)
    desc = ds.describe()
    assert desc["count"] == 1 and desc["entries"] == 2 and desc["expected_count"] == 652
    assert desc["skipped"] == [
        {"entry": layout.skipped[0], "reason": "no ground truth in the split list"}
    ]
    discovered = open_dataset(layout.arg(with_split=False)).describe()
    assert discovered["skipped"][0]["reason"] == "no ground-truth file"


def test_kitti_image_smaller_than_benchmark_crop(tmp_path):
    layout = make_layout("kitti", tmp_path, n=1)
    sample = layout.samples[0]
    (layout.path / sample.files["rgb"]).write_bytes(png_bytes(np.zeros((300, 1242, 3), np.uint8)))
    (layout.path / sample.files["depth"]).write_bytes(png_bytes(np.zeros((300, 1242), np.uint16)))
    with pytest.raises(DatasetError, match="expected at least 352x1216"):
        open_dataset(layout.arg()).load(sample.key)


def test_diode_subset_and_mask(tmp_path):
    layout = make_layout("diode", tmp_path, n=4, as_tar=True)
    for subset, expected in (("indoors", 325), ("outdoor", 446), ("all", 771)):
        ds = open_dataset(layout.arg(subset=subset))
        want = [s for s in layout.samples if subset == "all" or s.key.startswith(subset)]
        assert ds.keys() == [s.key for s in want]
        assert ds.describe()["expected_count"] == expected
        assert_sample(ds.load(want[0].key), want[0])
    assert open_dataset(layout.arg()).describe()["options"] == {
        "subset": "all",
        "split": str(layout.split),
    }
    with pytest.raises(ValueError, match="valid values: all, indoors, outdoor"):
        open_dataset(layout.arg(subset="kitchen"))


def test_diode_split_paths_may_include_val(tmp_path):
    layout = make_layout("diode", tmp_path, n=2, as_tar=True, top="diode_val")
    text = layout.split.read_text()
    layout.split.write_text(
        "".join(f"val/{p}" for p in text.replace(" ", " val/").splitlines(True))
    )
    ds = open_dataset(layout.arg())
    assert ds.keys() == [s.key for s in layout.samples]
    assert ds.keys()[0].startswith(("indoors/", "outdoor/"))


def test_eth3d_inf_kept_and_wrong_byte_count(tmp_path):
    layout = make_layout("eth3d", tmp_path, n=2)
    ds = open_dataset(layout.arg())
    sample = ds.load(layout.samples[0].key)
    assert np.isinf(sample.depth).any() and np.isfinite(sample.depth).any()
    bad = layout.samples[1]
    (layout.path / bad.files["depth"]).write_bytes(b"\0" * (48 * 64 * 4 - 4))
    with pytest.raises(DatasetError) as err:
        ds.load(bad.key)
    assert bad.files["depth"] in str(err.value)
    assert "expected raw little-endian float32 depth of 48x64" in str(err.value)


@pytest.mark.parametrize("as_tar", [False, True], ids=["dir", "tar"])
def test_split_list_inside_dataset_is_used(tmp_path, as_tar):
    layout = make_layout(
        "scannet", tmp_path, n=3, as_tar=as_tar, with_split=False, split_inside=True, top="sn"
    )
    ds = open_dataset(layout.arg())
    desc = ds.describe()
    assert desc["split_origin"] == "dataset" and SPLIT_NAME in desc["split"]
    assert ds.keys() == [s.key for s in layout.samples]  # list order, not sorted
    assert ds.keys() != sorted(ds.keys())


def test_several_split_lists_inside_need_a_choice(tmp_path):
    layout = make_layout("nyu", tmp_path, n=2, with_split=False, split_inside=True)
    (layout.path / "other_list.txt").write_text((layout.path / SPLIT_NAME).read_text())
    with pytest.raises(DatasetError, match="several split lists.*split=FILE"):
        open_dataset(layout.arg())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nope", "no such file or directory"),
        (lambda p: p.mkdir() or p, "contains no files"),
        (lambda p: p.mkdir() or (p / "a.png").write_bytes(b"x") and p, "no nyu files found"),
    ],
    ids=["missing", "empty", "unrelated"],
)
def test_wrong_path_names_it_and_the_layout(tmp_path, make, message):
    path = make(tmp_path / "data")
    with pytest.raises(DatasetError) as err:
        open_dataset(f"nyu={path}")
    text = str(err.value)
    assert str(path) in text and message in text
    assert "expected test/<scene>/rgb_XXXX.png files" in text


def test_two_copies_in_one_directory_are_ambiguous(tmp_path):
    layout = make_layout("nyu", tmp_path, n=1, with_split=False, top="a")
    shutil.copytree(layout.path / "a", layout.path / "b")
    with pytest.raises(DatasetError, match="files under several folders \\('a/', 'b/'\\)"):
        open_dataset(layout.arg())


def test_split_entry_missing_from_archive(tmp_path):
    layout = make_layout("scannet", tmp_path, n=2, as_tar=True)
    with layout.split.open("a") as f:
        f.write("scene0999_00/color/000000.jpg scene0999_00/depth/000000.png\n")
    with pytest.raises(DatasetError) as err:
        open_dataset(layout.arg())
    text = str(err.value)
    assert str(layout.split) in text and str(layout.path) in text
    assert "scene0999_00/color/000000.jpg" in text and "scene0999_00/depth/000000.png" in text


def test_an_unreadable_or_malformed_split_list_names_the_line(tmp_path):
    layout = make_layout("nyu", tmp_path, n=2)
    with pytest.raises(DatasetError, match="cannot read the split list"):
        open_dataset(f"nyu={layout.path},split={tmp_path / 'none.txt'}")
    layout.split.write_text("test/bathroom/rgb_0000.png\n")
    with pytest.raises(DatasetError, match="line 1: 1 fields; expected 'RGB DEPTH FILLED'"):
        open_dataset(layout.arg())


def test_discovered_image_without_depth(tmp_path):
    layout = make_layout("nyu", tmp_path, n=2, with_split=False)
    depth = layout.samples[0].files["depth"]
    (layout.path / depth).unlink()
    with pytest.raises(DatasetError, match="1 image without ground truth") as err:
        open_dataset(layout.arg())
    assert f"(no {depth})" in str(err.value)


def test_malformed_depth_names_the_file(tmp_path):
    layout = make_layout("nyu", tmp_path, n=2)
    ds = open_dataset(layout.arg())
    first, second = layout.samples
    depth = layout.path / first.files["depth"]
    depth.write_bytes(png_bytes(np.zeros((48, 64, 3), np.uint8)))
    with pytest.raises(DatasetError, match="mode RGB; expected a 16-bit greyscale PNG") as err:
        ds.load(first.key)
    assert str(depth) in str(err.value)
    (layout.path / second.files["depth"]).write_bytes(png_bytes(np.zeros((40, 64), np.uint16)))
    with pytest.raises(DatasetError, match="40x64; expected the size of its image"):
        ds.load(second.key)
    with pytest.raises(DatasetError, match="not a sample of nyu"):
        ds.load("test/none/rgb_0001")


def test_compressed_tar_is_refused(tmp_path):
    path = write_layout("nyu", tmp_path, n=1, as_tar=True)
    packed = tmp_path / "nyu.tar.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DatasetError, match="gzip-compressed.*uncompressed tar.*gunzip") as err:
        open_dataset(f"nyu={packed}")
    assert str(packed) in str(err.value)


def _hostile_tar(path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    with tarfile.open(path, "w") as tf:
        member.size = len(data) if member.isreg() else 0
        tf.addfile(member, io.BytesIO(data) if data else None)
    return f"nyu={path}"


def test_unsafe_members_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="unsafe member name"):
        open_dataset(_hostile_tar(tmp_path / "a.tar", tarfile.TarInfo("../evil.png"), b"x"))
    link = tarfile.TarInfo("test/x/rgb_0000.png")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    with pytest.raises(DatasetError, match="points outside the archive"):
        open_dataset(_hostile_tar(tmp_path / "b.tar", link))


def test_links_inside_the_archive_are_followed(tmp_path):
    layout = make_layout("nyu", tmp_path, n=1, with_split=False)
    files = {
        p.relative_to(layout.path).as_posix(): p.read_bytes()
        for p in layout.path.rglob("*")
        if p.is_file()
    }
    path = write_tar(tmp_path / "linked.tar", files)
    with tarfile.open(path, "a") as tf:
        link = tarfile.TarInfo("test/bathroom/rgb_0007.png")
        link.type, link.linkname = tarfile.SYMTYPE, "rgb_0000.png"
        tf.addfile(link)
        hard = tarfile.TarInfo("test/bathroom/depth_0007.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, "test/bathroom/depth_0000.png"
        tf.addfile(hard)
    ds = open_dataset(f"nyu={path}")
    assert ds.keys() == ["test/bathroom/rgb_0000", "test/bathroom/rgb_0007"]
    np.testing.assert_array_equal(ds.load(ds.keys()[1]).depth, layout.samples[0].depth)


def test_a_dataset_argument_is_name_path_and_options():
    assert parse_dataset_arg("nyu=/data/nyu.tar,split=/x/list.txt") == (
        "nyu",
        "/data/nyu.tar",
        {"split": "/x/list.txt"},
    )
    assert parse_dataset_arg("middlebury") == ("middlebury", None, {})
    assert parse_dataset_arg("diode=/d,subset=indoors")[2] == {"subset": "indoors"}
    with pytest.raises(ValueError, match="valid: " + ", ".join(DATASET_LOADERS.names()) + "$"):
        parse_dataset_arg("nyuv2=/data/nyu.tar")
    with pytest.raises(ValueError, match="unknown option 'crop' for nyu; valid: split"):
        parse_dataset_arg("nyu=/data/nyu.tar,crop=eigen")
    with pytest.raises(ValueError, match="nyu needs a path"):
        parse_dataset_arg("nyu")
    with pytest.raises(ValueError, match="takes no path"):
        parse_dataset_arg("middlebury=/x")
    with pytest.raises(ValueError, match="not key=value"):
        parse_dataset_arg("nyu=/x,split")


def test_open_dataset_from_name_path_and_options(tmp_path):
    layout = make_layout("nyu", tmp_path, n=2, as_tar=True)
    ds = open_dataset("nyu", layout.path, split=str(layout.split))
    assert ds.keys() == open_dataset(layout.arg()).keys()
    with pytest.raises(DatasetError, match="nyu needs a path"):
        open_dataset("nyu")
    with pytest.raises(ValueError, match="path is given twice"):
        open_dataset(f"nyu={layout.path}", layout.path)


def test_tar_dataset_pickles_and_loads_in_workers(tmp_path):
    layout = make_layout("diode", tmp_path, n=2, as_tar=True)
    ds = open_dataset(layout.arg())
    ds.load(ds.keys()[0])  # opens the tar in this process
    clone = pickle.loads(pickle.dumps(ds))
    assert_sample(clone.load(layout.samples[1].key), layout.samples[1])
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        depth = pool.submit(_load_depth, ds, layout.samples[0].key).result()
    np.testing.assert_array_equal(depth, layout.samples[0].depth)


def _load_depth(ds, key):
    return ds.load(key).depth


def test_check_data_counts_entries_ground_truth_and_skips(tmp_path):
    layout = make_layout("kitti", tmp_path, n=2, as_tar=True)
    quick = check_data(layout.arg())
    assert (quick["entries"], quick["with_gt"], quick["skipped"], quick["expected"]) == (
        3,
        2,
        1,
        652,
    )
    assert quick["checked"] == 1 and not quick["matches_expected"]
    full = check_data(layout.arg(), full=True)
    assert full["checked"] == 2 and full["shapes"] == {"352x1216": 2} and full["empty_gt"] == 0
    assert 0 < full["depth_range_m"][0] <= full["depth_range_m"][1] < 80


def test_check_data_full_decodes_every_sample(tmp_path):
    layout = make_layout("scannet", tmp_path, n=3)
    (layout.path / layout.samples[-1].files["depth"]).write_bytes(b"not a png")
    assert check_data(layout.arg())["checked"] == 1
    with pytest.raises(DatasetError, match="cannot decode"):
        check_data(layout.arg(), full=True)


def test_check_data_refuses_negative_depth(tmp_path):
    layout = make_layout("eth3d", tmp_path, n=1)
    (layout.path / layout.samples[0].files["depth"]).write_bytes(
        np.full((48, 64), -1.0, "<f4").tobytes()
    )
    with pytest.raises(DatasetError, match="NaN or negative"):
        check_data(layout.arg())


def test_middlebury_is_built_in():
    ds = open_dataset("middlebury")
    assert ds.keys() == ["motorcycle"] and ds.root == "" and ds.inference_long_side is None
    sample = ds[0]
    assert sample.rgb.shape == (500, 741, 3) and sample.depth.dtype == np.float32
    assert np.isinf(sample.depth).any() and ds.describe()["count"] == 1
    assert check_data("middlebury")["with_gt"] == 1
