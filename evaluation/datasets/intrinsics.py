"""The camera intrinsics of benchmark images: published constants and readers of the calibration
files the datasets ship.

Every `BenchmarkSample.intrinsics` is a `pipeline.dataset.camera.Intrinsics` in pixels of the
image as the loader returns it, in that module's convention: image coordinates run from 0 at the
left/top edge, so pixel column j covers `[j, j+1)` and `cx = width / 2` is the image centre.
Calibration tools of the OpenCV / Bouguet kind (and, as far as their files tell, NYUv2's toolbox,
KITTI, ScanNet, Sintel and Middlebury) put the centre of the first pixel at 0: `centred` adds 0.5
to their cx and cy. COLMAP (ETH3D's `cameras.txt`) already uses the edge convention.
"""

from __future__ import annotations

import posixpath

import numpy as np

from evaluation.datasets.base import DatasetError
from pipeline.dataset.camera import Intrinsics

# NYU Depth V2 toolbox camera_params.m (cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html), RGB
# intrinsics of the 640x480 Kinect frames, as public copies of that file quote it
# (fx_rgb = 5.1885790117450188e+02, fy_rgb = 5.1946961112127485e+02,
# cx_rgb = 3.2558244941119034e+02, cy_rgb = 2.5373616633400465e+02). Bouguet's toolbox
# convention (first pixel centre at 0).
NYU_RGB = (
    5.1885790117450188e02,
    5.1946961112127485e02,
    3.2558244941119034e02,
    2.5373616633400465e02,
)
NYU_SIZE = (480, 640)  # (height, width) the constants refer to

# DIODE, diode-dataset/diode-devkit intrinsics.txt (commit 8b1765b): [fx, fy, cx, cy] =
# [886.81, 927.06, 512, 384] for the 1024x768 crops ("the computational camera used to generate
# RGBD crops", paper Sec. 3.2). cx, cy are the image centre, so taken as edge convention. Note
# diode-devkit issue #20 (open) disputes these values (a fitted FOV of 42.3 x 32.4 degrees).
DIODE = (886.81, 927.06, 512.0, 384.0)
DIODE_SIZE = (768, 1024)

# Middlebury 2014 "Motorcycle" calib.txt (quoted in several repositories, e.g. the excerpt
# `cam0=[3979.911 0 1244.772; 0 3979.911 1019.507; 0 0 1]`, width=2964, height=2000), as
# scikit-image's quarter-resolution copy (741x500) needs it: f / 4 = 994.978 px, the
# reference's quarter-resolution focal length (reference/eval-protocol.md).
MOTORCYCLE_FULL = (3979.911, 3979.911, 1244.772, 1019.507)
MOTORCYCLE_FULL_SIZE = (2000, 2964)

# ScanNet's colour frames are 1296x968 (its scenes' metadata: colorWidth = 1296,
# colorHeight = 968, e.g. the ScanNet data-format README's `*.txt` example); the
# `intrinsic/intrinsic_color.txt` written by its SensReader refers to that size.
SCANNET_COLOR_SIZE = (968, 1296)


def centred(fx: float, fy: float, cx: float, cy: float, size: tuple[int, int]) -> Intrinsics:
    """Intrinsics given with the first pixel's centre at 0, for an image of `size` (h, w)."""
    return Intrinsics(fx, fy, cx + 0.5, cy + 0.5, size[1], size[0], "dataset")


def fitted(intrinsics: Intrinsics | None, height: int, width: int) -> Intrinsics | None:
    """`intrinsics` for its image resized to `height` x `width` (unchanged at the same size)."""
    if intrinsics is None or (intrinsics.height, intrinsics.width) == (height, width):
        return intrinsics
    return intrinsics.resized(height, width)


def _numbers(text: str, count: int, where: str, expected: str) -> np.ndarray:
    try:
        values = np.array(text.split(), dtype=np.float64)
    except ValueError as e:
        raise DatasetError(f"{where}: {e}; expected {expected}") from e
    if values.size != count or not np.isfinite(values).all():
        raise DatasetError(f"{where}: {values.size} numbers; expected {expected}")
    return values


def _text(data: bytes, where: str, expected: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{where}: not text ({e}); expected {expected}") from e


KITTI_CALIB = "a KITTI calib_cam_to_cam.txt with lines 'S_rect_02: W H' and 'P_rect_02: 12 numbers'"


def parse_kitti_cam_to_cam(data: bytes, where: str) -> Intrinsics:
    """Camera 2's rectified intrinsics (P_rect_02) at its rectified size (S_rect_02)."""
    rows = {}
    for line in _text(data, where, KITTI_CALIB).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            rows[key.strip()] = value
    if "P_rect_02" not in rows or "S_rect_02" not in rows:
        raise DatasetError(f"{where}: no P_rect_02 or S_rect_02; expected {KITTI_CALIB}")
    p = _numbers(rows["P_rect_02"], 12, where, KITTI_CALIB).reshape(3, 4)
    w, h = _numbers(rows["S_rect_02"], 2, where, KITTI_CALIB)
    return centred(p[0, 0], p[1, 1], p[0, 2], p[1, 2], (int(round(h)), int(round(w))))


SCANNET_INTRINSIC = "a ScanNet intrinsic_color.txt (a 4x4 matrix, fx fy cx cy in its first rows)"


def parse_scannet_intrinsic(data: bytes, where: str) -> Intrinsics:
    """ScanNet's colour intrinsics, for its 1296x968 colour frames."""
    k = _numbers(_text(data, where, SCANNET_INTRINSIC), 16, where, SCANNET_INTRINSIC)
    k = k.reshape(4, 4)
    return centred(k[0, 0], k[1, 1], k[0, 2], k[1, 2], SCANNET_COLOR_SIZE)


SINTEL_CAM = "a Sintel .cam file (float32 tag 202021.25, then 3x3 and 3x4 float64 matrices)"
SINTEL_CAM_TAG = 202021.25


def parse_sintel_cam(data: bytes, where: str, size: tuple[int, int]) -> Intrinsics:
    """The intrinsic matrix M of a Sintel `.cam` file, for its frame of `size` (h, w)."""
    if len(data) < 4 + 8 * 21 or float(np.frombuffer(data, "<f4", 1)[0]) != SINTEL_CAM_TAG:
        raise DatasetError(f"{where}: {len(data)} bytes or a wrong tag; expected {SINTEL_CAM}")
    m = np.frombuffer(data, "<f8", 9, offset=4).reshape(3, 3)
    return centred(m[0, 0], m[1, 1], m[0, 2], m[1, 2], size)


COLMAP_CAMERAS = "a COLMAP cameras.txt (CAMERA_ID MODEL WIDTH HEIGHT PARAMS...)"
COLMAP_F_C = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")  # params f, cx, cy, ...
COLMAP_FX_FY_C = ("PINHOLE", "OPENCV", "FULL_OPENCV", "THIN_PRISM_FISHEYE", "OPENCV_FISHEYE")


def parse_colmap_cameras(data: bytes, where: str) -> dict[str, Intrinsics]:
    """Camera id -> its pinhole intrinsics (a distorting model's distortion is dropped)."""
    cameras = {}
    for line in _text(data, where, COLMAP_CAMERAS).splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 7 or fields[1] not in COLMAP_F_C + COLMAP_FX_FY_C:
            raise DatasetError(f"{where}: line {line.strip()!r}; expected {COLMAP_CAMERAS}")
        w, h = (int(v) for v in fields[2:4])
        p = _numbers(" ".join(fields[4:]), len(fields) - 4, where, COLMAP_CAMERAS)
        fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if fields[1] in COLMAP_F_C else p[:4]
        cameras[fields[0]] = Intrinsics(fx, fy, cx, cy, w, h, "dataset")
    return cameras


def colmap_image_cameras(data: bytes) -> dict[str, str]:
    """Image file name (base name) -> camera id, from a COLMAP images.txt (its first lines of
    IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME)."""
    found = {}
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if not ln.startswith("#")]
    for line in lines[::2]:
        fields = line.split()
        if len(fields) == 10:
            found[posixpath.basename(fields[9])] = fields[8]
    return found


IBIMS_CALIB = (
    "an iBims-1 calib/<name>.txt: 'fx,fy,cx,cy' or a 3x3 camera matrix (comma- or space-separated)"
)


IBIMS_SIZE = (480, 640)  # iBims-1's frames (its release: RGB 640x480)


def parse_ibims_calib(data: bytes, where: str) -> Intrinsics:
    """The intrinsics of an iBims-1 `calib/<name>.txt`, for its 640x480 frame. Public
    loaders read the file with `np.loadtxt(path, delimiter=",")`; OMNI-DC's iBims adapter
    (evaluation_ibims) takes 4 values as fx, fy, cx, cy and 9 as the 3x3 matrix: so do we."""
    text = _text(data, where, IBIMS_CALIB).replace(",", " ")
    count = len(text.split())
    if count == 4:
        return centred(*_numbers(text, 4, where, IBIMS_CALIB), IBIMS_SIZE)
    k = _numbers(text, 9, where, IBIMS_CALIB).reshape(3, 3)
    return centred(k[0, 0], k[1, 1], k[0, 2], k[1, 2], IBIMS_SIZE)
