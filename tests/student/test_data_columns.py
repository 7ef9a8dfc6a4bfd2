"""`student.data.columns`: refusing unusable label columns before training starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import copy_dataset, edit_manifest, two_column_dataset, write_column

from pipeline.dataset import load_dataset
from student.data.columns import check_columns, label_conversion, to_disparity


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return two_column_dataset(tmp_path_factory.mktemp("columns"))


@pytest.fixture
def ds(base: Path, tmp_path: Path) -> Path:
    return copy_dataset(base, tmp_path / "ds")


def test_complete_columns_pass(base: Path) -> None:
    manifests = check_columns(base, ["a", "b"])
    assert list(manifests) == ["a", "b"]
    assert manifests["b"].backend == "zarr"
    assert check_columns(load_dataset(base), ["b"])["b"].column == "b"


def test_missing_column_names_it_and_the_fix(base: Path) -> None:
    with pytest.raises(ValueError, match=r"'nope' not found.*manifest\.json.*labelgen run") as e:
        check_columns(base, ["a", "nope"])
    assert "['a', 'b']" in str(e.value)  # the columns that do exist


def test_no_or_duplicate_teachers(base: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_columns(base, [])
    with pytest.raises(ValueError, match="more than once"):
        check_columns(base, ["a", "a"])


def test_plan_mismatch(ds: Path) -> None:
    edit_manifest(ds, "b", lambda m: m.update(plan_sha256="f" * 64))
    with pytest.raises(ValueError, match="'b'.*another crop plan.*relabel or use the matching"):
        check_columns(ds, ["a", "b"])


@pytest.mark.parametrize(
    "codec, message",
    [
        ({"name": "no-such-codec"}, "unknown codec 'no-such-codec'"),
        ({"name": "pcodec-f16", "params": {"nope": 1}}, "bad parameters"),
    ],
)
def test_codec_this_installation_cannot_decode(ds: Path, codec, message) -> None:
    edit_manifest(ds, "b", lambda m: m.update(codec=codec))
    with pytest.raises(ValueError, match="'b'") as e:
        check_columns(ds, ["a", "b"])
    assert message in str(e.value) and "manifest.json" in str(e.value)


def test_unfinished_shards_are_listed(ds: Path) -> None:
    write_column(ds, "half", shards=[1])
    with pytest.raises(ValueError, match=r"'half'.*2 of 3 shards: 000000, 000002.*labelgen run"):
        check_columns(ds, ["half"])


def test_failed_or_deleted_shard_is_unfinished(ds: Path) -> None:
    info = load_dataset(ds)
    (info.layout.label_shard("a", 2, ".tar")).unlink()
    edit_manifest(ds, "b", lambda m: m["shards"]["000001"].update(status="failed"))
    with pytest.raises(ValueError, match="'a'.*1 of 3 shards: 000002"):
        check_columns(ds, ["a"])
    with pytest.raises(ValueError, match="'b'.*1 of 3 shards: 000001"):
        check_columns(ds, ["b"])


def test_affine_depth_refused_metric_depth_inverted(ds: Path) -> None:
    write_column(ds, "affd", kind="depth", invariance="affine", shards=[0, 1, 2])
    write_column(ds, "metric", kind="metric_depth", invariance="metric")
    with pytest.raises(ValueError, match="'affd' holds affine-invariant depth.*disparity space"):
        check_columns(ds, ["a", "affd"])
    manifests = check_columns(ds, ["a", "metric"])  # mixing metric depth with disparity is fine
    assert label_conversion(manifests["a"]) == "identity"
    assert label_conversion(manifests["metric"]) == "inverse"


def test_to_disparity() -> None:
    depth = np.array([[2.0, 0.0, -1.0, np.inf, np.nan]], np.float32)
    out = to_disparity(depth, "inverse")
    assert out.dtype == np.float32
    assert out[0, 0] == pytest.approx(0.5)
    assert out[0, 3] == 0.0  # infinitely far (sky) is zero disparity
    assert np.isnan(out[0, [1, 2, 4]]).all()
    same = to_disparity(np.array([[1.0, np.inf]], np.float32), "identity")
    assert same[0, 0] == 1.0 and np.isnan(same[0, 1])


def test_a_shard_replaced_by_another_file_is_refused(ds: Path) -> None:
    import shutil

    from data_helpers import constant

    write_column(ds, "c", maps=constant(2.0))
    info = load_dataset(ds)
    shutil.copy(info.layout.label_shard("c", 1, ".tar"), info.layout.label_shard("a", 1, ".tar"))
    with pytest.raises(ValueError, match=r"'a'.*000001 differ in size.*labelgen run") as e:
        check_columns(ds, ["a"])
    assert "--redo 000001" in str(e.value)


def test_a_shard_written_for_another_column_or_shard_is_refused(tmp_path: Path) -> None:
    from student.data.shards import check_origin

    path = tmp_path / "000001.tar"
    check_origin(path, {"column": "a", "shard": "000001"}, "a", "000001")
    check_origin(path, {}, "a", "000001")  # shards written without origin metadata
    with pytest.raises(ValueError, match="column 'dpt', shard 000001, not of column 'a'"):
        check_origin(path, {"column": "dpt", "shard": "000001"}, "a", "000001")
    with pytest.raises(ValueError, match="shard 000000, not of column 'a', shard 000001"):
        check_origin(path, {"column": "a", "shard": "000000"}, "a", "000001")
