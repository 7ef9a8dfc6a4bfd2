"""Tests of the PIL-drawn evaluation figures (evaluation/figures.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation.figures import GAP, MAX_PANEL_WIDTH, sample_panel, save_png, scatter_plot
from pipeline.toolkit.colormap import INVALID, LUT, colorize, colorize_robust, robust_range


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def depth_scene(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sloped depth map 1..9 m, its mask (a hole and an invalid top band)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gt = 1.0 + 8.0 * yy / h + xx / w
    mask = np.ones((h, w), dtype=bool)
    mask[: h // 6] = False
    mask[h // 2 : h // 2 + 10, w // 2 : w // 2 + 10] = False
    return gt, gt.copy(), mask


def test_colorize_shape_range_and_monotone_brightness():
    values = np.linspace(0.0, 1.0, 1000, dtype=np.float32).reshape(10, 100)
    image = colorize(values, 0.0, 1.0)
    assert image.shape == (10, 100, 3) and image.dtype == np.uint8
    lum = luminance(image.reshape(-1, 3))
    assert np.all(np.diff(lum) >= 0) and lum[-1] - lum[0] > 200
    assert np.all(np.diff(luminance(LUT)) > 0)
    # Clipped outside the range; lo > hi reverses the map.
    assert (colorize(np.array([[-5.0, 7.0]]), 0, 1) == LUT[[0, 255]]).all()
    assert (colorize(np.array([[0.0, 1.0]]), 1, 0) == LUT[[255, 0]]).all()


def test_invalid_pixels_are_grey_and_grey_is_no_map_colour():
    values = np.array([[0.5, np.nan, np.inf, 0.2]], dtype=np.float32)
    mask = np.array([[False, False, False, True]])
    image = colorize(values, 0, 1, invalid_mask=mask)
    assert (image[0, 1:] == INVALID).all()
    assert not (image[0, 0] == INVALID).all()
    assert not (LUT == INVALID).all(axis=1).any()  # grey is never a map colour
    assert (colorize(np.full((2, 2), 3.0), 3.0, 3.0) >= 0).all()  # empty range: no error


def test_robust_colours_ignore_outliers_and_grey_out_what_is_not_valid():
    values = np.linspace(1.0, 2.0, 100, dtype=np.float32).reshape(10, 10)
    values[0, 0], values[0, 1] = 1e6, np.nan  # an outlier and a hole
    valid = np.ones_like(values, dtype=bool)
    valid[9, 9] = False
    lo, hi = robust_range(values, valid)
    assert 1.0 < lo < 1.1 and 1.9 < hi < 2.0  # the outlier moves neither end
    image = colorize_robust(values, valid)
    assert (image[0, 1] == INVALID).all() and (image[9, 9] == INVALID).all()
    assert (image[0, 0] == LUT[255]).all() and (image[0, 2] == LUT[0]).all()  # clipped
    assert robust_range(np.full((2, 2), np.nan)) == (0.0, 1.0)


def test_sample_panel_layout_and_perfect_prediction():
    pred, gt, mask = depth_scene()
    panel = sample_panel(pred, gt, mask)
    h, w = gt.shape
    assert panel.shape == (h, 3 * w + 2 * GAP, 3) and panel.dtype == np.uint8
    assert (panel[:, w : w + GAP] == 255).all()  # white gaps
    p_panel, g_panel = panel[:, :w], panel[:, w + GAP : 2 * w + GAP]
    e_panel = panel[:, 2 * (w + GAP) :]
    rows = slice(h // 6 + 5, h)  # below the labels
    scored = mask[rows]
    assert (p_panel[rows][scored] == g_panel[rows][scored]).all()  # one colour range
    assert (e_panel[rows][scored] == LUT[0]).all()  # zero error everywhere scored
    # Outside the mask: grey in GT and error panels, coloured in the prediction panel.
    hole = (slice(h // 2, h // 2 + 10), slice(w // 2, w // 2 + 10))
    assert (g_panel[hole] == INVALID).all() and (e_panel[hole] == INVALID).all()
    assert not (p_panel[hole] == INVALID).all(axis=-1).any()
    # Near is bright: the top valid rows are brighter than the bottom ones.
    assert luminance(g_panel[h // 6 + 20, w - 10]) > luminance(g_panel[h - 2, w - 10])


def test_sample_panel_error_panel_shows_error():
    _, gt, mask = depth_scene()
    panel = sample_panel(gt * 1.5, gt, mask)  # AbsRel 0.5 = top of the error range
    w = gt.shape[1]
    region = panel[60:110, 2 * (w + GAP) + 20 : 2 * (w + GAP) + 60]
    assert (region == LUT[255]).all()


def test_sample_panel_validates_shapes_and_handles_empty_mask():
    pred, gt, _ = depth_scene()
    with pytest.raises(ValueError, match="differ"):
        sample_panel(pred[:10], gt, None)
    panel = sample_panel(pred, gt, np.zeros(gt.shape, dtype=bool))
    assert (panel[40:, gt.shape[1] + GAP : 2 * gt.shape[1] + GAP] == INVALID).all()


def test_sample_panel_downscales_big_inputs_before_any_work(monkeypatch):
    """A 24 MP map is cut to the panel's size first: every colouring (the per-pixel work) sees
    only panel-sized maps (counted, not timed)."""
    import evaluation.figures as figures

    coloured: list[tuple[int, ...]] = []
    real = figures.colorize
    monkeypatch.setattr(
        figures, "colorize", lambda x, *a, **k: coloured.append(x.shape) or real(x, *a, **k)
    )
    h, w = 4032, 6048
    gt = np.broadcast_to(np.linspace(1, 50, h, dtype=np.float32)[:, None], (h, w))
    gt = np.ascontiguousarray(gt)
    gt[:50] = np.inf
    panel = sample_panel(gt * 1.1, gt, np.isfinite(gt))
    assert panel.shape[1] <= MAX_PANEL_WIDTH and panel.shape[2] == 3
    assert panel.shape[0] == pytest.approx(panel.shape[1] / 3 * h / w, abs=6)
    assert len(coloured) == 3
    assert all(shape[1] * 3 <= MAX_PANEL_WIDTH and shape[0] < h // 6 for shape in coloured)


def test_scatter_of_identity_puts_mass_on_the_diagonal():
    rng = np.random.default_rng(1)
    gt = np.exp(rng.uniform(np.log(0.5), np.log(20), 200_000))
    pred = gt * np.exp(rng.normal(0.0, 0.01, gt.size))  # y = x, about 1 px of scatter
    image = scatter_plot(pred, gt, "y = x", size=512)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    left, top, side = 62, 30, 512 - 30 - 44  # the plot area of scatter_plot
    plot = image[top : top + side, left : left + side]
    k = np.arange(20, side - 20)
    near = plot[side - 1 - k, k + 2]  # two pixels right of the y = x line
    far = plot[side - 1 - k // 3, k]  # well below the diagonal
    assert (far == LUT[0]).all()  # empty bins
    assert np.median(luminance(near)) > luminance(LUT[0]) + 40
    assert (image[:top, :] == 255).any() and (image[:top, :] < 128).any()  # a drawn title


def test_scatter_accepts_millions_and_rejects_junk():
    rng = np.random.default_rng(2)
    gt = rng.uniform(1, 10, 2_500_000).astype(np.float32)
    pred = gt * rng.uniform(0.9, 1.1, gt.size).astype(np.float32)
    pred[:1000] = np.nan
    pred[1000:2000] = -1.0
    a = scatter_plot(pred, gt, "2.5M points")
    assert a.shape == (512, 512, 3)
    assert (scatter_plot(pred, gt, "2.5M points") == a).all()  # deterministic subsample
    empty = scatter_plot(np.array([np.nan, -1.0]), np.array([1.0, 2.0]), "nothing")
    assert empty.shape == (512, 512, 3)
    with pytest.raises(ValueError):
        scatter_plot(np.ones(3), np.ones(4), "mismatch")


def test_save_png_round_trip(tmp_path):
    pred, gt, mask = depth_scene()
    panel = sample_panel(pred, gt, mask)
    path = save_png(panel, tmp_path / "deep" / "dir" / "panel.png")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert (np.asarray(image) == panel).all()


def test_edge_panel_colours_found_missed_and_spurious_edges():
    from evaluation.figures import EDGE_COLOURS, edge_panel

    gt = np.full((40, 60), 4.0)
    gt[10:30, 10:25] = 2.0  # found: the prediction has this square
    gt[10:30, 40:50] = 2.0  # missed: the prediction has no second square
    pred = np.full_like(gt, 4.0)
    pred[10:30, 10:25] = 2.0
    pred[35:38, 5:8] = 1.0  # spurious
    panel = edge_panel(pred, gt, None)
    assert panel.shape == (40, 60, 3)
    colour = {
        name: tuple(panel[y, x])
        for name, (y, x) in {"both": (20, 10), "missed": (20, 40), "spurious": (36, 5)}.items()
    }
    assert colour == EDGE_COLOURS
    assert tuple(panel[20, 55]) not in EDGE_COLOURS.values()  # no edge there


def test_edge_panel_of_a_large_map_keeps_one_pixel_edges_visible():
    from evaluation.figures import EDGE_COLOURS, edge_panel

    gt = np.full((600, 4000), 4.0)
    gt[:, 2001:] = 2.0  # one column of edges
    panel = edge_panel(gt, gt, None)
    assert panel.shape[1] <= 1800
    assert (panel == EDGE_COLOURS["both"]).all(axis=-1).any()
