"""The five zero-shot benchmarks as Marigold distributes them (see `reference/eval-protocol.md`).

Ground truth is decoded to float32 metres: uint16 PNGs divided by their scale (NYUv2 and
ScanNet 1000, KITTI 256; 0 = no measurement), ETH3D's raw float32 binary (inf = invalid) and
DIODE's `.npy` depth plus its mask file.
"""

from __future__ import annotations

import posixpath
import re

import numpy as np

from evaluation.datasets.base import (
    DATASET_LOADERS,
    BenchmarkSample,
    DatasetError,
    DatasetRules,
)
from evaluation.datasets.decode import (
    check_same_size,
    decode_npy,
    decode_raw_f32,
    depth_from_u16,
)
from evaluation.datasets.intrinsics import (
    DIODE,
    DIODE_SIZE,
    NYU_RGB,
    NYU_SIZE,
    centred,
    colmap_image_cameras,
    fitted,
    parse_colmap_cameras,
    parse_kitti_cam_to_cam,
    parse_scannet_intrinsic,
)
from evaluation.datasets.marigold import Entry, MarigoldDataset
from pipeline.dataset.camera import Intrinsics, view_intrinsics

KB_HEIGHT, KB_WIDTH = 352, 1216  # the KITTI benchmark crop
CAM_TO_CAM = "calib_cam_to_cam.txt"


class _U16Dataset(MarigoldDataset):
    """Ground truth stored as a uint16 PNG of `depth * scale`."""

    scale = 1000.0

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        where = self.where(entry.depth)
        depth = depth_from_u16(self.read(entry.depth), where, self.scale)
        check_same_size(rgb, self.where(entry.rgb), depth, where)
        return BenchmarkSample(entry.key, rgb, depth)


@DATASET_LOADERS.register("nyu")
class NyuDataset(_U16Dataset):
    """NYUv2 labelled test split: the raw `depth_XXXX.png`, never the filled one."""

    name = "nyu"
    title = "NYUv2"
    rules = DatasetRules("nyu", 1e-3, 10.0, eval_crop=(45, 471, 41, 601))
    archive_name = "nyu_labeled_extracted.tar"
    rgb_pattern = r"test/(?P<scene>[^/]+)/rgb_(?P<id>\d+)\.png"
    rgb_hint = "test/<scene>/rgb_XXXX.png"
    split_hint = "RGB DEPTH FILLED"
    expected_count = 654
    intrinsics_source = (
        "published constants: the NYU Depth V2 toolbox's camera_params.m (RGB, 640x480), "
        "scaled to the image's size"
    )

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        return fitted(centred(*NYU_RGB, NYU_SIZE), height, width)

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        return [f"test/{match['scene']}/depth_{match['id']}.png"], None


@DATASET_LOADERS.register("scannet")
class ScanNetDataset(_U16Dataset):
    """ScanNet validation frames, Marigold's sampled list of 800."""

    name = "scannet"
    title = "ScanNet"
    rules = DatasetRules("scannet", 1e-3, 10.0)
    archive_name = "scannet_val_sampled_800_1.tar"
    rgb_pattern = r"(?P<scene>scene\d{4}_\d{2})/color/(?P<frame>\d+)\.jpg"
    rgb_hint = "sceneXXXX_XX/color/XXXXXX.jpg"
    expected_count = 800
    intrinsics_source = (
        "calibration file: sceneXXXX_XX/intrinsic/intrinsic_color.txt (for the 1296x968 colour "
        "frames), scaled to the image's size; None where the layout has none (Marigold's tar)"
    )

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        return [f"{match['scene']}/depth/{match['frame']}.png"], None

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        scene_dir = posixpath.dirname(posixpath.dirname(entry.rgb))
        name = posixpath.join(scene_dir, "intrinsic", "intrinsic_color.txt")
        if name not in self.archive:
            return None  # ScanNet's intrinsics differ per scene: no constant to fall back on
        return fitted(parse_scannet_intrinsic(self.read(name), self.where(name)), height, width)


def kitti_benchmark_crop(image: np.ndarray) -> np.ndarray:
    """The bottom-centre 352x1216 window: top = H - 352, left = (W - 1216) // 2."""
    top = image.shape[0] - KB_HEIGHT
    left = (image.shape[1] - KB_WIDTH) // 2
    return np.ascontiguousarray(image[top : top + KB_HEIGHT, left : left + KB_WIDTH])


@DATASET_LOADERS.register("kitti")
class KittiDataset(_U16Dataset):
    """KITTI Eigen test split; RGB and ground truth come KB-cropped to 352x1216. Lines (or
    images) without ground truth are skipped and counted."""

    name = "kitti"
    title = "KITTI"
    rules = DatasetRules("kitti", 1e-5, 80.0, eval_crop=(117, 321, 43, 1172))
    archive_name = "kitti_eigen_split_test.tar"
    rgb_pattern = (
        r"(?P<date>\d{4}_\d{2}_\d{2})/(?P<drive>[^/]+_sync)/image_02/data/(?P<frame>\d+)\.png"
    )
    rgb_hint = "<date>/<drive>_sync/image_02/data/XXXXXXXXXX.png"
    split_hint = "RGB GT FOCAL (GT may be None)"
    skip_missing_gt = True
    expected_count = 652
    scale = 256.0
    intrinsics_source = (
        "calibration file: <date>/calib_cam_to_cam.txt, P_rect_02 (per recording date), shifted "
        "by the benchmark crop; None where the layout has none (Marigold's tar)"
    )

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        # The files only. The one per-date table found (the "DeepLidar" intrinsics copied into
        # depth-completion loaders, already cut to 1216x352) shifts cx by the crop for 2011_09_26
        # but not for 2011_09_28 or 2011_09_30 (against their P_rect_02 values quoted in public
        # calibration files), so it is not used: without the file, None.
        drive_dir = posixpath.dirname(posixpath.dirname(posixpath.dirname(entry.rgb)))
        name = posixpath.join(posixpath.dirname(drive_dir), CAM_TO_CAM)
        if name not in self.archive:
            return None
        calib = fitted(parse_kitti_cam_to_cam(self.read(name), self.where(name)), height, width)
        top, left = height - KB_HEIGHT, (width - KB_WIDTH) // 2
        return view_intrinsics(
            calib, (left, top, left + KB_WIDTH, top + KB_HEIGHT), KB_HEIGHT, KB_WIDTH
        )

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        return [f"{match['drive']}/proj_depth/groundtruth/image_02/{match['frame']}.png"], None

    def split_paths(self, fields: list[str]) -> tuple[str, str | None, str | None]:
        return fields[0], (None if fields[1] == "None" else fields[1]), None

    def prepare_rgb(self, entry: Entry, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if h < KB_HEIGHT or w < KB_WIDTH:
            raise DatasetError(
                f"{self.where(entry.rgb)}: {h}x{w}; expected at least {KB_HEIGHT}x{KB_WIDTH} "
                "for the KITTI benchmark crop"
            )
        return kitti_benchmark_crop(rgb)

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        sample = super().make_sample(entry, rgb)  # checks that GT and image sizes agree
        sample.rgb = self.prepare_rgb(entry, rgb)
        sample.depth = kitti_benchmark_crop(sample.depth)
        return sample


@DATASET_LOADERS.register("eth3d")
class Eth3dDataset(MarigoldDataset):
    """ETH3D high-resolution DSLR images; ground truth is raw float32 of the image's size."""

    name = "eth3d"
    title = "ETH3D"
    rules = DatasetRules("eth3d", 1e-5, float("inf"))
    archive_name = "eth3d.tar"
    inference_long_side = 756
    rgb_pattern = r"rgb/(?P<scene>[^/]+)/images/dslr_images/(?P<file>[^/]+\.(?:JPG|jpg|JPEG|jpeg))"
    rgb_hint = "rgb/<scene>/images/dslr_images/DSC_XXXX.JPG"
    expected_count = 454
    intrinsics_source = (
        "calibration file: rgb/<scene>/dslr_calibration_undistorted/cameras.txt (or "
        "dslr_calibration_jpg/, distortion dropped), COLMAP format, scaled to the image's size; "
        "None where the layout has none (Marigold's tar)"
    )

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        scene, tail = match["scene"], f"ground_truth_depth/dslr_images/{match['file']}"
        return [f"depth/{scene}/{tail}", f"depth/{scene}_dslr_depth/{scene}/{tail}"], None

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        scene_dir = posixpath.dirname(posixpath.dirname(posixpath.dirname(entry.rgb)))
        for folder in ETH3D_CALIBRATIONS:
            name = posixpath.join(scene_dir, folder, "cameras.txt")
            if name in self.archive:
                return fitted(self._camera(entry, name), height, width)
        return None  # each scene has its own calibration: no constant to fall back on

    def _camera(self, entry: Entry, name: str) -> Intrinsics:
        cameras = parse_colmap_cameras(self.read(name), self.where(name))
        if len(cameras) == 1:
            return next(iter(cameras.values()))
        images = posixpath.join(posixpath.dirname(name), "images.txt")
        ids = colmap_image_cameras(self.read(images)) if images in self.archive else {}
        found = cameras.get(ids.get(posixpath.basename(entry.rgb), ""))
        if found is None:
            raise DatasetError(
                f"{self.where(name)}: {len(cameras)} cameras and no images.txt entry naming "
                f"{posixpath.basename(entry.rgb)}; expected one camera or an images.txt beside it"
            )
        return found

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        depth = decode_raw_f32(self.read(entry.depth), self.where(entry.depth), rgb.shape[:2])
        return BenchmarkSample(entry.key, rgb, depth)


# ETH3D's per-scene COLMAP calibrations, the undistorted (pinhole) one first.
ETH3D_CALIBRATIONS = ("dslr_calibration_undistorted", "dslr_calibration_jpg")
DIODE_EXPECTED = {"all": 771, "indoors": 325, "outdoor": 446}


@DATASET_LOADERS.register("diode")
class DiodeDataset(MarigoldDataset):
    """DIODE validation split; `subset=indoors|outdoor` keeps one half (default all)."""

    name = "diode"
    title = "DIODE"
    rules = DatasetRules("diode", 0.0, float("inf"), clip=(0.6, 350.0), range_from_mask_only=True)
    archive_name = "diode_val.tar"
    inference_long_side = 640
    rgb_pattern = r"(?P<subset>indoors|outdoor)/(?P<dir>scene_\d+/scan_\d+)/(?P<stem>[^/]+)\.png"
    rgb_hint = "(val/)indoors|outdoor/scene_XXXXX/scan_XXXXX/<name>.png"
    split_hint = "RGB DEPTH MASK"
    split_columns = 3
    options = {"split": None, "subset": tuple(DIODE_EXPECTED)}
    default_options = {"subset": "all"}
    intrinsics_source = (
        "published constants: diode-devkit's intrinsics.txt (1024x768), scaled to the image's size"
    )

    def intrinsics(self, entry: Entry, height: int, width: int) -> Intrinsics | None:
        constants = Intrinsics(*DIODE, DIODE_SIZE[1], DIODE_SIZE[0], "dataset")
        return fitted(constants, height, width)

    def partners(self, match: re.Match) -> tuple[list[str], list[str] | None]:
        stem = f"{match['subset']}/{match['dir']}/{match['stem']}"
        return [f"{stem}_depth.npy"], [f"{stem}_depth_mask.npy"]

    def split_paths(self, fields: list[str]) -> tuple[str, str | None, str | None]:
        return fields[0], fields[1], fields[2]

    def select(self, entries: list[Entry]) -> list[Entry]:
        subset = self.options_used["subset"]
        if subset == "all":
            return entries
        return [e for e in entries if f"/{subset}/" in f"/{e.key}"]

    def expected(self) -> int:
        return DIODE_EXPECTED[self.options_used["subset"]]

    def make_sample(self, entry: Entry, rgb: np.ndarray) -> BenchmarkSample:
        rgb_where, where = self.where(entry.rgb), self.where(entry.depth)
        depth = decode_npy(self.read(entry.depth), where, "float32 depth [H, W, 1] in metres")
        if not np.issubdtype(depth.dtype, np.floating):
            raise DatasetError(f"{where}: dtype {depth.dtype}; expected float32 depth in metres")
        check_same_size(rgb, rgb_where, depth, where)
        assert entry.mask is not None
        mask_where = self.where(entry.mask)
        mask = decode_npy(self.read(entry.mask), mask_where, "a validity mask [H, W]")
        check_same_size(rgb, rgb_where, mask, mask_where)
        return BenchmarkSample(entry.key, rgb, depth.astype(np.float32), mask != 0)
