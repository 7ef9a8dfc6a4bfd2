"""`prepare`: photos and bad files in; shards, plan and dataset.json out; identical re-runs."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from image_helpers import png_header_only
from PIL import Image

from pipeline import __version__
from pipeline.dataset import load_dataset
from pipeline.dataset.layout import KEY_RE, SCHEMA_VERSION, DatasetLayout
from pipeline.dataset.plan import PlanParams, load_plan_shard, plan_hash, plan_image
from pipeline.dataset.prepare import PrepareSettings, prepare
from pipeline.images.photos import SAMPLES, write_sample_images
from pipeline.images.shards import read_image_shard, shard_keys
from pipeline.images.sources import Item

FAST = PrepareSettings(shard_size=3)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("samples")
    return {p.name: p.read_bytes() for p in write_sample_images(folder)}


@pytest.fixture
def photos(tmp_path: Path, monkeypatch, sample_files: dict[str, bytes]) -> str:
    """A folder of the bundled photos plus three bad files; the cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    for name, data in sample_files.items():
        (tmp_path / "photos" / name).write_bytes(data)
    (tmp_path / "photos/bad").mkdir()
    (tmp_path / "photos/bad/empty.jpg").write_bytes(b"")
    (tmp_path / "photos/bad/notes.jpg").write_text("not an image")
    Image.new("RGB", (40, 30)).save(tmp_path / "photos/bad/tiny.png")
    return "photos"


def test_prepare_writes_shards_plan_and_dataset_json(photos: str, tmp_path: Path) -> None:
    result = prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    n = len(SAMPLES)
    assert (result.num_listed, result.num_samples, result.num_rejected) == (n + 3, n, 3)
    assert result.num_shards == -(-n // 3)
    assert result.summary() == (
        f"prepared {n} images into {result.num_shards} shards at ds; 3 rejected "
        "(see ds/dataset.json, key 'rejected')"
    )
    record = json.loads((tmp_path / "ds/dataset.json").read_text())
    assert record["schema"] == SCHEMA_VERSION and record["code_version"] == __version__
    assert record["inputs"] == [str(tmp_path / "photos")] and record["shard_size"] == 3
    assert record["num_samples"] == n and record["plan_params"] == PlanParams().to_json()
    assert [r["origin"] for r in record["rejected"]] == [
        "photos/bad/empty.jpg",
        "photos/bad/notes.jpg",
        "photos/bad/tiny.png",
    ]
    assert "empty" in record["rejected"][0]["reason"]
    assert "too small" in record["rejected"][2]["reason"]
    names = [s["name"] for s in record["shards"]]
    assert names == [f"{i:06d}" for i in range(result.num_shards)]
    assert [s["count"] for s in record["shards"]] == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    shas = [s["plan_sha256"] for s in record["shards"]]
    assert record["plan_hash"] == result.plan_hash == plan_hash(shas, PlanParams())


def test_shards_and_plan_agree(photos: str, tmp_path: Path) -> None:
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    layout = DatasetLayout(tmp_path / "ds")
    record = json.loads(layout.dataset_json.read_text())
    keys = []
    for index in range(len(record["shards"])):
        plans = load_plan_shard(layout.plan_shard(index))
        assert list(plans) == shard_keys(layout.image_shard(index))
        for key, rgb, meta in read_image_shard(layout.image_shard(index)):
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            assert plans[key]["size"] == meta["size"] == list(rgb.shape[:2])
            assert plans[key] == plan_image(key, *meta["size"], PlanParams())
            assert meta["origin"].startswith("photos/")
            keys.append(key)
    assert keys == sorted(SAMPLES)


def test_webdataset_reads_the_dataset(photos: str, tmp_path: Path) -> None:
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    urls = sorted(str(p) for p in (tmp_path / "ds/images").glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert sorted(s["__key__"] for s in samples) == sorted(SAMPLES)
    for s in samples:
        image = s["jpg"] if "jpg" in s else s["png"]
        assert image.dtype == np.uint8 and list(image.shape) == [*s["json"]["size"], 3]


def test_rerun_is_byte_identical_with_any_worker_count(photos: str, tmp_path: Path) -> None:
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    first = snapshot(tmp_path / "ds")
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    assert snapshot(tmp_path / "ds") == first
    prepare([photos], Path("other"), PrepareSettings(shard_size=3), progress=False, workers=2)
    assert snapshot(tmp_path / "other") == first


def test_shard_size_is_configurable(photos: str) -> None:
    one = prepare([photos], Path("a"), PrepareSettings(shard_size=100), progress=False, workers=1)
    assert one.num_shards == 1 and "into 1 shard at" in one.summary()
    each = prepare([photos], Path("b"), PrepareSettings(shard_size=1), progress=False, workers=1)
    assert each.num_shards == len(SAMPLES)


def test_refuses_a_dataset_from_other_inputs_or_settings(photos: str, tmp_path: Path) -> None:
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    with pytest.raises(ValueError, match="shard_size differ.*new directory"):
        prepare([photos], Path("ds"), PrepareSettings(shard_size=4), progress=False, workers=1)
    with pytest.raises(ValueError, match="plan_params differ"):
        prepare([photos], Path("ds"), PrepareSettings(shard_size=3, seed=1), progress=False)
    with pytest.raises(ValueError, match="inputs differ"):
        prepare([photos, photos], Path("ds"), FAST, progress=False, workers=1)


def test_refuses_a_non_empty_directory(photos: str, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        prepare([photos], Path("busy"), FAST, progress=False, workers=1)


def test_labels_are_never_touched_and_guard_changed_inputs(photos: str, tmp_path: Path) -> None:
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    manifest = tmp_path / "ds/labels/dav2/manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"teacher": "dav2"}')
    prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    assert manifest.read_text() == '{"teacher": "dav2"}'
    Image.fromarray(np.full((100, 100, 3), 7, np.uint8)).save(tmp_path / "photos/new.png")
    with pytest.raises(ValueError, match="label columns \\(dav2\\)"):
        prepare([photos], Path("ds"), FAST, progress=False, workers=1)


def test_rerun_with_fewer_images_removes_stale_shards(photos: str, tmp_path: Path) -> None:
    before = prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    for name in ("retina.jpg", "rocket.jpg", "coffee.jpg"):
        (tmp_path / "photos" / name).unlink()
    after = prepare([photos], Path("ds"), FAST, progress=False, workers=1)
    assert after.num_shards == before.num_shards - 1
    tars = sorted(p.name for p in (tmp_path / "ds/images").iterdir())
    plans = sorted(p.name for p in (tmp_path / "ds/plan").iterdir())
    assert tars == [f"{i:06d}.tar" for i in range(after.num_shards)]
    assert plans == [f"{i:06d}.json" for i in range(after.num_shards)]


def test_tar_inputs_are_read_member_by_member_and_bad_members_rejected(
    tmp_path: Path, monkeypatch, sample_files: dict[str, bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    photo = sample_files["astronaut.jpg"]
    with tarfile.open(tmp_path / "sa_000000.tar", "w") as tf:
        for name, data in [("sa_1.jpg", photo), ("sa_1.json", b"{}"), ("sa_2.jpg", b"junk")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    result = prepare(["sa_000000.tar"], Path("ds"), FAST, progress=False, workers=1)
    assert result.num_samples == 1
    assert result.rejected[0]["origin"] == "sa_000000.tar:sa_2.jpg"
    [(key, _rgb, meta)] = read_image_shard(tmp_path / "ds/images/000000.tar")
    assert (key, meta["origin"]) == ("sa_1", "sa_000000.tar:sa_1.jpg")


def png(h: int = 80, w: int = 96, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_keys_are_valid_for_the_label_store(tmp_path: Path, monkeypatch) -> None:
    """Names starting with '_', '-' or a non-ASCII letter used to give keys labelgen refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    names = ["_under.png", "-dash.png", "\u00e9.png", "normal.png", "9.png", "a_b-c.png"]
    for i, name in enumerate(names):
        (tmp_path / "in" / name).write_bytes(png(seed=i))
    result = prepare(["in"], Path("ds"), FAST, progress=False, workers=1)
    assert (result.num_samples, result.num_rejected) == (len(names), 0)
    keys = [
        k for shard in sorted((tmp_path / "ds/images").glob("*.tar")) for k in shard_keys(shard)
    ]
    assert len(keys) == len(set(keys)) == len(names)
    assert all(KEY_RE.match(k) for k in keys), keys
    assert {"normal", "9", "a_b-c"} <= set(keys)  # names that gave valid keys keep them
    assert {"k_under", "k-dash", "k_"} <= set(keys)
    for path in (tmp_path / "ds/plan").glob("*.json"):
        assert all(KEY_RE.match(k) for k in load_plan_shard(path))


def write_tar(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def test_truncated_tar_is_rejected_not_fatal(tmp_path: Path, monkeypatch) -> None:
    """A cut-off download: its intact members and every other input are still prepared."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    images = [png(seed=i) for i in range(5)]
    write_tar(tmp_path / "in/good.tar", {"g1.png": images[0], "g2.png": images[1]})
    raw = write_tar(
        tmp_path / "in/cut.tar", {"c1.png": images[2], "c2.png": images[3], "c3.png": images[4]}
    )
    c2_data = 512 + -(-len(images[2]) // 512) * 512 + 512  # c1's header and data, c2's header
    (tmp_path / "in/cut.tar").write_bytes(raw[: c2_data + len(images[3]) // 2])
    inputs = ["in/good.tar", "in/cut.tar"]
    result = prepare(inputs, Path("ds"), FAST, progress=False, workers=1)
    assert (result.num_samples, result.num_rejected) == (3, 1)
    assert shard_keys(tmp_path / "ds/images/000000.tar") == ["c1", "g1", "g2"]
    [rejected] = json.loads((tmp_path / "ds/dataset.json").read_text())["rejected"]
    assert rejected["origin"] == "in/cut.tar:c2.png"
    assert "in/cut.tar: member 'c2.png' is truncated" in rejected["reason"]
    assert "re-download the tar" in rejected["reason"]
    first = snapshot(tmp_path / "ds")
    prepare(inputs, Path("ds"), FAST, progress=False, workers=1)
    assert snapshot(tmp_path / "ds") == first
    prepare(inputs, Path("other"), PrepareSettings(shard_size=3), progress=False, workers=2)
    assert snapshot(tmp_path / "other") == first


def test_unreadable_tar_is_rejected_not_fatal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_tar(tmp_path / "good.tar", {"g1.png": png()})
    (tmp_path / "junk.tar").write_bytes(b"<html>not found</html>" * 50)
    result = prepare(["good.tar", "junk.tar"], Path("ds"), FAST, progress=False, workers=1)
    assert result.num_samples == 1
    [rejected] = result.rejected
    assert rejected["origin"] == "junk.tar"
    assert "junk.tar: not a readable uncompressed tar" in rejected["reason"]
    assert "re-download the tar" in rejected["reason"]
    with pytest.raises(ValueError, match="(?s)no usable images.*junk.tar: cannot read"):
        prepare(["junk.tar"], Path("ds2"), FAST, progress=False, workers=1)


def test_all_rejected_is_an_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="(?s)no usable images.*in/a.jpg"):
        prepare(["in"], Path("ds"), FAST, progress=False, workers=1)
    assert not (tmp_path / "ds/dataset.json").exists()


def test_duplicate_keys_fail_before_any_work(
    tmp_path: Path, monkeypatch, sample_files: dict[str, bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "astronaut.jpg").write_bytes(sample_files["astronaut.jpg"])
    with pytest.raises(ValueError, match="a/astronaut.jpg and b/astronaut.jpg"):
        prepare(["a", "b"], Path("ds"), FAST, progress=False, workers=1)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"shard_size": 0}, "--shard-size must be ≥ 1"),
        ({"regions": 0}, "--regions"),
        ({"min_overlap": 1.5}, "--min-overlap"),
        ({"min_side": 0}, "--min-side"),
    ],
)
def test_settings_validation_names_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        PrepareSettings(**kwargs)


def test_sample_images_are_deterministic(tmp_path: Path) -> None:
    first = write_sample_images(tmp_path / "a")
    second = write_sample_images(tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    assert {"astronaut.jpg", "camera.png", "motorcycle_left.png"} <= {p.name for p in first}
    assert Image.open(tmp_path / "a/camera.png").mode == "L"


@pytest.mark.slow
def test_many_images_with_a_pool(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(120):
        h, w = rng.integers(64, 900, size=2)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(f"{i:03d}.jpg")
    settings = PrepareSettings(shard_size=50)
    result = prepare(["*.jpg"], Path("ds"), settings, progress=False, workers=2)
    assert (result.num_samples, result.num_shards) == (120, 3)
    one = prepare(["*.jpg"], Path("ds1"), PrepareSettings(shard_size=50), progress=False, workers=1)
    assert snapshot(tmp_path / "ds") == snapshot(tmp_path / "ds1") and one.num_samples == 120


class _KillsItsWorker(Item):
    """An input whose reading kills the decoding process (as the kernel's OOM killer would)."""

    def load(self) -> bytes:
        import os

        os._exit(9)


def test_a_decoding_worker_that_dies_stops_the_run_with_a_message(tmp_path):
    from pipeline.dataset.prepare import decoding

    photo = tmp_path / "ok.png"
    Image.new("RGB", (32, 24), (10, 20, 30)).save(photo)
    items = [Item(f"ok{i}", f"in/ok{i}.png", str(photo)) for i in range(9)]
    items.append(_KillsItsWorker("boom", "in/boom.png", str(photo)))
    died = "worker process died.*in/boom.png.*fewer --workers"
    with (
        pytest.raises(RuntimeError, match=died),
        decoding(items, PrepareSettings().decode_params(), workers=2) as results,
    ):
        list(results)


def test_tile_and_region_sides_are_settings(tmp_path, photo_folder):
    """Small-scale studies shrink the plan's geometry; the paper's values are the defaults."""
    assert (PrepareSettings().tile, PrepareSettings().min_region) == (560, 644)
    result = prepare([str(photo_folder)], tmp_path / "ds", PrepareSettings(tile=64, min_region=96))
    params = load_dataset(result.out).plan_params
    assert (params.tile, params.min_region) == (64, 96)
    for entry in load_plan_shard(tmp_path / "ds" / "plan" / "000000.json").values():
        for region in entry["regions"]:
            assert all(t[2] - t[0] == 64 or t == region["box"] for t in region["tiles"])
            assert region["box"][2] - region["box"][0] >= min(96, *entry["size"])
    with pytest.raises(ValueError, match="--tile must be ≥ 2"):
        PrepareSettings(tile=1)


def test_odd_names_links_and_huge_headers_are_reported_not_fatal(
    tmp_path: Path, monkeypatch
) -> None:
    """Each of these used to stop the run or vanish without a word: a name that is not UTF-8, a
    symlink to itself, a dangling one, a symlinked folder, other files, and a PNG claiming
    30000 x 30000 pixels (rejected with PIL's text, and only in the decoding processes)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "elsewhere").mkdir()
    with open(os.fsencode(tmp_path / "in") + b"/caf\xe9.png", "wb") as f:
        f.write(png(seed=1))
    (tmp_path / "in/ok.png").write_bytes(png(seed=2))
    (tmp_path / "elsewhere/far.png").write_bytes(png(seed=3))
    (tmp_path / "in/huge.png").write_bytes(png_header_only(30_000, 30_000))
    (tmp_path / "in/notes.txt").write_text("x")
    os.symlink("loop.jpg", tmp_path / "in/loop.jpg")
    os.symlink("gone.jpg", tmp_path / "in/dangling.jpg")
    os.symlink("../elsewhere", tmp_path / "in/linked")
    os.symlink(".", tmp_path / "in/again")  # in/ again: listed once
    os.symlink("../in", tmp_path / "elsewhere/back")  # a cycle through the linked folder
    result = prepare(["in"], Path("ds"), FAST, progress=False, workers=1)
    assert (result.num_listed, result.num_samples, result.num_rejected) == (6, 3, 3)
    record = json.loads((tmp_path / "ds/dataset.json").read_text(encoding="utf-8"))
    reasons = {r["origin"]: r["reason"] for r in record["rejected"]}
    assert sorted(reasons) == ["in/dangling.jpg", "in/huge.png", "in/loop.jpg"]
    assert "a broken symlink: its target 'gone.jpg' does not exist" in reasons["in/dangling.jpg"]
    assert "a symlink loop" in reasons["in/loop.jpg"]
    assert "30000x30000 = 900000000 pixels exceeds the limit of" in reasons["in/huge.png"]
    assert "(--max-pixels" in reasons["in/huge.png"]
    assert record["skipped"] == {
        "extension": {".txt": 1},
        "hidden": 0,
        "linked_folders": 2,
        "special": 0,
    }
    assert record["num_skipped"] == 3
    assert result.summary().endswith(
        "; 3 rejected (see ds/dataset.json, key 'rejected'); skipped 1 non-image file (.txt: 1), "
        "2 linked folders listed already (see key 'skipped')"
    )
    origins = {
        key: meta["origin"] for key, _, meta in read_image_shard(tmp_path / "ds/images/000000.tar")
    }
    assert origins == {
        "caf_xe9": "in/caf\\xe9.png",
        "linked__far": "in/linked/far.png",
        "ok": "in/ok.png",
    }
    first = snapshot(tmp_path / "ds")
    prepare(["in"], Path("two"), PrepareSettings(shard_size=3), progress=False, workers=2)
    assert snapshot(tmp_path / "two") == first  # the limit holds in the decoding processes too
