"""`LabelColumn`: shard paths, the one "shard i is usable" rule, the identity refusal, recording
done and failed shards under the manifest lock; the label and relabel commands
(`pipeline.labels.commands`)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from dataset_helpers import prepare_small, write_fake_column, write_photos

from pipeline.dataset import load_dataset
from pipeline.dataset.plan import PlanParams
from pipeline.labels.codecs import get_codec
from pipeline.labels.column import (
    FAILED,
    MISSING,
    NOT_LABELLED,
    OTHER_IMAGES,
    RESIZED,
    USABLE,
    LabelColumn,
)
from pipeline.labels.commands import (
    label_command,
    parse_shard_ranges,
    relabel_command,
    shard_ranges,
)
from pipeline.labels.identity import ColumnIdentity
from pipeline.labels.manifest import ColumnManifest, manifest_lock, record_shard, shard_entry


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """5 images in 3 shards; column `wds` (all shards), `zarr` (all), `part` (shard 0 only)."""
    root = tmp_path_factory.mktemp("column")
    ds = prepare_small(write_photos(root / "photos"), root / "ds", shard_size=2)
    write_fake_column(ds, "wds")
    write_fake_column(ds, "zarr", backend="zarr")
    write_fake_column(ds, "part", shards={0})
    return ds


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(base, out)
    return out


def _edit(column: LabelColumn, edit) -> None:
    manifest = ColumnManifest.load(column.manifest_path)
    edit(manifest)
    manifest.save(column.manifest_path)
    column.reload()


def test_shard_path_follows_the_column_backend(base: Path) -> None:
    info = load_dataset(base)
    assert LabelColumn(info, "wds").shard_path(1) == base / "labels" / "wds" / "000001.tar"
    assert LabelColumn(base, "zarr").shard_path(2) == base / "labels" / "zarr" / "000002.zarr"
    assert LabelColumn(str(base), "zarr").suffix == ".zarr"


def test_a_missing_column_or_an_unknown_backend_names_the_fix(ds: Path) -> None:
    with pytest.raises(ValueError, match=r"'nope' not found.*manifest\.json.*labelgen run") as e:
        LabelColumn(ds, "nope").shard_path(0)
    assert "['part', 'wds', 'zarr']" in str(e.value)
    column = LabelColumn(ds, "wds")
    _edit(column, lambda m: setattr(m, "backend", "lmdb"))
    with pytest.raises(ValueError, match=r"manifest\.json: label backend 'lmdb' is unknown"):
        column.shard_path(0)
    with pytest.raises(ValueError, match="column name 'Bad.Name' is invalid"):
        LabelColumn(ds, "Bad.Name")


@pytest.mark.parametrize("name", ["wds", "zarr"])
def test_an_intact_column_is_usable(base: Path, name: str) -> None:
    checks = LabelColumn(base, name).check_shards()
    assert [(c.shard, c.status) for c in checks] == [
        (s, USABLE) for s in ("000000", "000001", "000002")
    ]
    assert all(c.size == c.recorded and c.size > 0 for c in checks)


def test_not_labelled_and_failed_shards(ds: Path) -> None:
    column = LabelColumn(ds, "part")
    record_shard(column.dir, "000002", shard_entry("failed", error="disk on fire"))
    column.reload()
    statuses = [c.status for c in column.check_shards()]
    assert statuses == [USABLE, NOT_LABELLED, FAILED]
    assert [c.shard for c in column.check_shards({"000001"})] == ["000001"]


def test_a_deleted_or_truncated_shard_is_not_usable(ds: Path) -> None:
    info = load_dataset(ds)
    column = LabelColumn(info, "wds")
    column.shard_path(0).unlink()
    shard = column.shard_path(1)
    shard.write_bytes(shard.read_bytes()[:1000])
    missing, resized, intact = column.check_shards()
    assert (missing.status, resized.status, intact.status) == (MISSING, RESIZED, USABLE)
    assert (
        missing.describe()
        == f"{column.shard_path(0)} is listed as done in the manifest but missing"
    )
    assert resized.size == 1000 and resized.recorded > 1000
    assert resized.describe().startswith(f"{shard} has 1000 bytes, the manifest recorded ")


def test_a_zarr_shard_with_a_deleted_chunk_is_not_usable(ds: Path) -> None:
    column = LabelColumn(ds, "zarr")
    shard = column.shard_path(1)
    chunk = max((p for p in shard.rglob("*") if p.is_file() and p.name != "zarr.json"), key=str)
    chunk.unlink()
    check = column.check_shard(load_dataset(ds).shards[1])
    assert check.status == RESIZED and not check.usable
    assert check.size == sum(p.stat().st_size for p in shard.rglob("*") if p.is_file())
    assert check.size < check.recorded


def test_labels_made_from_other_images_are_not_usable(ds: Path) -> None:
    column = LabelColumn(ds, "wds")
    _edit(column, lambda m: m.shards["000002"].update(image_sha256="0" * 64))
    check = column.check_shards()[2]
    assert check.status == OTHER_IMAGES
    assert "was labelled from other images" in check.describe()


PROVENANCE = {
    "column": "new",
    "teacher": "new",
    "adapter": "fake",
    "weights": {"source": "none", "sha256": "0" * 64},
    "output_kind": "disparity",
    "invariance": "affine",
    "input_rule": {},
    "precision": "fp32",
    "codec": get_codec("pcodec-f16").describe(),
    "backend": "wds",
    "extra": {"options": {"input_size": 518}},
}


def _requested(column: LabelColumn, **changes) -> ColumnIdentity:
    fields = {
        "weights_sha256": "0" * 64,
        "plan_sha256": column.info.plan_hash,
        "codec": get_codec("pcodec-f16").describe(),
        "backend": "wds",
        "precision": "fp32",
        "options": {"input_size": 518},
    }
    return ColumnIdentity(**{**fields, **changes})


def test_identity_refusal_names_what_differs(ds: Path) -> None:
    column = LabelColumn(ds, "new")
    assert not column.same_identity(_requested(column), overwrite=False)  # no manifest yet
    assert column.open({**PROVENANCE, "plan_sha256": column.info.plan_hash}, False) is False
    assert column.same_identity(_requested(column), overwrite=False)
    other = _requested(column, weights_sha256="1" * 64, precision="bf16")
    with pytest.raises(ValueError) as e:
        column.same_identity(other, overwrite=False)
    assert str(e.value) == (
        f"label column 'new' ({column.manifest_path}) was made with other weights (000000000000 "
        "there, 111111111111 now); another precision (fp32 there, bf16 now); use a new teacher "
        "name, or --overwrite to relabel the column"
    )
    assert column.same_identity(other, overwrite=True) is False  # nothing counts as done
    options = _requested(column, options={"input_size": 700})
    with pytest.raises(ValueError, match=r"other teacher options \(\{\"input_size\": 518\}"):
        column.same_identity(options, overwrite=False)


def test_open_with_overwrite_replaces_a_differing_header(ds: Path) -> None:
    column = LabelColumn(ds, "wds")
    new = {**PROVENANCE, "column": "wds", "teacher": "wds", "backend": "zarr"}
    new["plan_sha256"] = column.info.plan_hash
    with pytest.raises(ValueError, match=r"was made with different .*backend"):
        column.open(new, overwrite=False)
    assert column.open(new, overwrite=True) is True
    assert column.manifest.backend == "zarr" and column.manifest.shards == {}
    assert column.suffix == ".zarr"
    assert column.open(new, overwrite=True) is False  # the same header now: kept


def _blocked_while_locked(column: LabelColumn, action) -> list:
    """Run `action()` in a thread while this thread holds the manifest lock: it must wait."""
    result: list = []
    with manifest_lock(column.dir):
        worker = threading.Thread(target=lambda: result.append(action()))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and not result  # waiting for the lock
    worker.join(10)
    assert not worker.is_alive()
    return result


def test_record_done_and_failed_wait_for_the_manifest_lock(ds: Path) -> None:
    info = load_dataset(ds)
    column = LabelColumn(info, "part")
    done = dict(column.manifest.shards["000000"])
    shard1, shard2 = info.shards[1], info.shards[2]
    column.shard_path(1).write_bytes(column.shard_path(0).read_bytes())
    _blocked_while_locked(column, lambda: column.record_done(shard1, done))
    assert column.reload().shards["000001"] == done
    (recorded,) = _blocked_while_locked(column, lambda: column.record_failed(shard2, "oom"))
    assert recorded is True
    entry = column.reload().shards["000002"]
    assert entry["status"] == "failed" and entry["error"] == "oom"


def test_record_failed_keeps_usable_done_labels_only(ds: Path) -> None:
    info = load_dataset(ds)
    column = LabelColumn(info, "wds")
    assert column.record_failed(info.shards[0], "lost the claim") is False
    assert column.reload().is_done("000000")
    column.shard_path(1).unlink()  # done in the manifest, but no longer usable
    assert column.record_failed(info.shards[1], "disk full") is True
    assert column.reload().shards["000001"]["status"] == "failed"
    with pytest.raises(ValueError, match="does not exist"):
        LabelColumn(info, "nope").record_failed(info.shards[0], "x")


def test_clear_stale_temporaries(ds: Path) -> None:
    info = load_dataset(ds)
    column = LabelColumn(info, "wds")
    (column.dir / ".000001.abc.tmp").write_bytes(b"x")
    (column.dir / ".000001.def.tmp").mkdir()
    (column.dir / ".000002.abc.tmp").write_bytes(b"x")
    column.clear_stale_temporaries(info.shards[1])
    assert sorted(p.name for p in column.dir.glob(".*.tmp")) == [".000002.abc.tmp"]


def test_relabel_command_and_shard_ranges(ds: Path) -> None:
    column = LabelColumn(ds, "zarr")
    command = relabel_command(column, ["000000", "000001"])
    assert command == (
        f"labelgen run --dataset {ds} --teacher zarr=fake:none --format zarr --precision fp32 "
        "--redo 000000-000001"
    )
    assert label_command(column) == f"labelgen run --dataset {ds} --teacher zarr=ADAPTER:SOURCE"
    assert shard_ranges(["000000", "000001", "000002", "000007"]) == "000000-000002,000007"
    info = load_dataset(ds)
    assert parse_shard_ranges([shard_ranges(["000000", "000002"])], info) == {"000000", "000002"}


@pytest.mark.parametrize(
    "values,expected",
    [
        (["000001"], {"000001"}),
        (["1", "2"], {"000001", "000002"}),
        (["000000-000001,"], {"000000", "000001"}),
        (None, set()),
    ],
)
def test_redo_values_name_shards_by_number_or_range(base: Path, values, expected) -> None:
    assert parse_shard_ranges(values, load_dataset(base)) == expected


def test_dataset_plan_params_are_typed(base: Path) -> None:
    params = load_dataset(base).plan_params
    assert params == PlanParams() and params.tile == 560
