"""Teacher roles (primary / assistant, 7:3) and the averaging control (`data.teacher_mix=average`,
`student.data.fusion`): hand cases, invariances, the stream, and the v2 Table 4 configs training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_dataset, write_column, x_ramp
from PIL import Image
from train_helpers import train

from pipeline.toolkit.config import load_config
from student.config import DataSettings, TrainSettings
from student.data.augment import AugmentSettings
from student.data.fusion import check_roles, fuse, role_weights
from student.data.stream import DistillStream

CONFIGS = Path(__file__).parents[2] / "configs"
S = 56

pytestmark = pytest.mark.usefixtures("no_launcher_env")


def _map(seed: int, shape=(20, 30)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 4.0, shape).astype(np.float32)


def _normalized(d: np.ndarray) -> np.ndarray:
    med = np.median(d)
    return (d - med) / np.abs(d - med).mean()


def test_roles_give_the_primary_seven_tenths():
    assert role_weights(["primary", "assistant"]) == pytest.approx([0.7, 0.3])
    assert role_weights(["assistant", "primary", "assistant"]) == pytest.approx([0.15, 0.7, 0.15])
    assert role_weights(["primary"]) == [1.0]


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["primary"], "1 roles for 2 teachers"),
        (["primary", "helper"], "'helper'"),
        (["assistant", "assistant"], "exactly one primary"),
        (["primary", "primary"], "exactly one primary"),
    ],
)
def test_bad_roles_are_refused(roles, message):
    with pytest.raises(ValueError, match=message):
        check_roles(roles, 2)


def test_fusing_one_teacher_with_an_affine_copy_of_itself_is_its_normalized_map():
    d = _map(0)
    fused = fuse([d, 3.0 * d + 7.0], [0.7, 0.3], keep=0.8)
    assert np.isfinite(fused).all()  # they agree everywhere: nothing is left out
    np.testing.assert_allclose(fused, _normalized(d), atol=1e-4)


def test_fusion_is_invariant_to_each_teachers_scale_and_shift():
    a, b = _map(1), _map(2)
    ref = fuse([a, b], [0.7, 0.3], keep=0.8)
    moved = fuse([0.01 * a - 3.0, 50.0 * b + 2.0], [0.7, 0.3], keep=0.8)
    np.testing.assert_array_equal(np.isnan(ref), np.isnan(moved))
    np.testing.assert_allclose(ref, moved, atol=1e-3, equal_nan=True)  # float32 maps


def test_the_weighted_average_of_the_normalized_maps():
    a, b = _map(3), _map(4)
    fused = fuse([a, b], [7, 3], keep=1.0)
    np.testing.assert_allclose(fused, 0.7 * _normalized(a) + 0.3 * _normalized(b), atol=1e-4)
    np.testing.assert_allclose(fuse([a, b], [1, 0], keep=0.5), _normalized(a), atol=1e-4)


def test_pixels_where_the_teachers_disagree_are_left_out():
    a = _map(5, (40, 40))
    b = a.copy()
    b[:10, :10] = 9.0  # the assistant is wrong in one corner (a sixteenth of the pixels)
    fused = fuse([a, b], [0.5, 0.5], keep=0.9)
    dropped = np.isnan(fused)
    assert dropped.sum() == pytest.approx(0.1 * a.size, abs=2)
    assert dropped[:10, :10].all()  # the corner goes first, the most disagreeing pixels next


def test_a_pixel_one_teacher_lacks_is_invalid_and_sizes_are_matched():
    a = _map(6, (20, 30))
    b = np.asarray(Image.fromarray(a).resize((60, 40), Image.Resampling.BILINEAR), np.float32)
    a_nan = a.copy()
    a_nan[3, 4] = np.nan
    fused = fuse([a_nan, b], [0.7, 0.3], keep=1.0)
    assert fused.shape == a.shape and np.isnan(fused[3, 4])  # b (twice the size) was resized
    assert np.isfinite(np.delete(fused.ravel(), 3 * 30 + 4)).all()


def test_bad_keep_is_refused():
    with pytest.raises(ValueError, match="average_keep"):
        fuse([_map(0)], [1.0], keep=0.0)


@pytest.fixture(scope="module")
def three_teachers(tmp_path_factory) -> Path:
    """Teachers `a` (x ramp), `c` (3·a + 10: the same teacher up to scale and shift) and `d`
    (disagreeing with `a` on the right quarter of every map)."""
    ds = make_dataset(tmp_path_factory.mktemp("fusion"))
    ramp = x_ramp()

    def affine(key, entry, name, box):
        return 3.0 * ramp(key, entry, name, box) + 10.0

    def wrong_right(key, entry, name, box):
        out = ramp(key, entry, name, box).copy()
        w = out.shape[1]
        out[:, 3 * w // 4 :] = out[:, 3 * w // 4 :][:, ::-1] * 5.0
        return out

    write_column(ds, "a", maps=ramp)
    write_column(ds, "c", maps=affine, backend="zarr")
    write_column(ds, "d", maps=wrong_right)
    return ds


def _stream(ds: Path, teachers, **data) -> DistillStream:
    settings = DataSettings(size=S, augment=AugmentSettings.none(), **data)
    return DistillStream(ds, teachers, settings, batch_size=2, seed=3, rank=0, world=1)


def test_roles_without_weights_draw_seven_to_three(three_teachers):
    s = _stream(three_teachers, ["a", "c"], teacher_roles=["assistant", "primary"])
    assert s.probabilities == pytest.approx([0.3, 0.7])


def test_the_averaged_stream_hands_out_the_fused_label_of_the_same_views(three_teachers):
    alone = list(_stream(three_teachers, ["a"]))
    # average_keep 1: float16 storage makes the copies differ by up to a few hundredths of a
    # deviation on narrow crops, which the default 0.8 would count as disagreement.
    fused = list(_stream(three_teachers, ["a", "c"], teacher_mix="average", average_keep=1.0))
    assert len(alone) == len(fused)
    for one, both in zip(alone, fused, strict=True):
        assert both["teacher"] == ["average", "average"]
        assert both["teacher_index"].tolist() == [-1, -1]
        assert one["key"] == both["key"] and one["region"].tolist() == both["region"].tolist()
        for i in range(2):
            x, y = one["sc"][i, 0].numpy().ravel(), both["sc"][i, 0].numpy().ravel()
            assert np.isfinite(y).all()
            slope, shift = np.polyfit(x, y, 1)
            assert slope > 0 and np.abs(slope * x + shift - y).max() < 1e-3 * np.ptp(y)


def test_the_averaged_stream_leaves_out_where_teachers_disagree(three_teachers):
    for batch in _stream(three_teachers, ["a", "d"], teacher_mix="average", average_keep=0.8):
        valid = batch["valid"].float().mean().item()
        assert 0.7 < valid < 0.9
        right = batch["valid"][..., 3 * S // 4 + 2 :].float().mean().item()
        assert right < 0.5  # the disagreeing quarter is most of what is left out


def test_average_with_per_sample_teachers_is_refused():
    with pytest.raises(ValueError, match="per_sample_teacher"):
        TrainSettings(data=DataSettings(teacher_mix="average", per_sample_teacher=True)).validate()
    with pytest.raises(ValueError, match="teacher_mix"):
        TrainSettings(data=DataSettings(teacher_mix="mean")).validate()


def test_paper_config_pairs_a_primary_with_an_assistant_seven_to_three():
    paper = load_config(TrainSettings, CONFIGS / "paper.yaml").data
    assert (paper.teacher_roles, paper.teacher_weights, paper.teacher_mix) == (
        ["primary", "assistant"],
        [0.7, 0.3],
        "select",
    )


def test_table4_configs():
    table4 = {
        p.stem: load_config(TrainSettings, p).data
        for p in (CONFIGS / "ablations").glob("table4-*.yaml")
    }
    assert sorted(table4) == [
        "table4-average",
        "table4-dav2-alone",
        "table4-genpercept-alone",
        "table4-selection",
    ]
    assert table4["table4-selection"].teacher_mix == "select"
    assert table4["table4-average"].teacher_mix == "average"
    for name in ("table4-selection", "table4-average"):
        assert table4[name].teacher_weights == [0.7, 0.3]
    for path in (CONFIGS / "ablations").glob("*.yaml"):
        header = path.read_text().splitlines()[:2]
        assert any("ETH3D / DIODE AbsRel" in line for line in header), path.name
        if path.stem.startswith(("table1", "table2")):
            assert "v1" in header[0] and "v2" in header[1], path.name


@pytest.mark.parametrize("config", ["table4-selection", "table4-average"])
def test_table4_two_teacher_configs_train(train_setup, tmp_path, config):
    dataset, init = train_setup
    path = CONFIGS / "ablations" / f"{config}.yaml"
    metrics = train(tmp_path / config, dataset, init, "--config", str(path), "--steps", "2")
    assert len(metrics) == 2 and all(np.isfinite(m["loss"]) for m in metrics)
    names = {t for m in metrics for t in np.atleast_1d(m["teacher"]).tolist()}
    assert names == {"average"} if config == "table4-average" else names <= {"alpha", "beta"}
