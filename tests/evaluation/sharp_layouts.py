"""Writers of small copies of MPI Sintel, iBims-1 and Middlebury 2014 in their release layouts
(real `.dpt`, 16-bit PNG, PFM and `calib.txt` files), with the samples a loader must return.

Every ground truth is a raised square (sharp edges in all four directions) on a background, plus
the set's own kind of invalid pixels away from the square: Sintel's far sky, iBims-1's zeros,
invalid and transparent masks, Middlebury's unknown (inf) disparities.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eval_layouts import png_bytes, write_tar, write_tree
from PIL import Image

SIZE = (24, 32)
SQUARE = (slice(8, 16), slice(10, 20))
SINTEL_SKY = 1.0e10


@dataclass
class SharpSample:
    key: str
    rgb: np.ndarray
    depth: np.ndarray  # float32 metres, as the loader must return them
    valid_mask: np.ndarray | None
    files: dict[str, str]  # "rgb", "depth", ... -> archive path


@dataclass
class SharpLayout:
    name: str
    path: Path
    samples: list[SharpSample]  # in the loader's order
    top: str = ""
    clean: list[SharpSample] = field(default_factory=list)  # Sintel's clean renders

    def arg(self, **options: str) -> str:
        return ",".join([f"{self.name}={self.path}", *(f"{k}={v}" for k, v in options.items())])


def _rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def raised_square(background: float, square: float) -> np.ndarray:
    values = np.full(SIZE, background, dtype=np.float64)
    values[SQUARE] = square
    return values


def dpt_bytes(depth: np.ndarray) -> bytes:
    """A Sintel `.dpt` file: tag 202021.25, int32 width and height, float32 row-major."""
    h, w = depth.shape
    return struct.pack("<fii", 202021.25, w, h) + depth.astype("<f4").tobytes()


SINTEL_K = (30.0, 31.0, 15.5, 11.5)  # fx, fy, cx, cy of every frame's .cam (first pixel at 0)


def cam_bytes(fx: float, fy: float, cx: float, cy: float) -> bytes:
    """A Sintel `.cam` file: tag 202021.25, intrinsic 3x3 and extrinsic 3x4 float64."""
    m = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "<f8")
    return struct.pack("<f", 202021.25) + m.tobytes() + np.eye(3, 4, dtype="<f8").tobytes()


def pfm_bytes(values: np.ndarray, little_endian: bool = True) -> bytes:
    """A greyscale PFM: `Pf`, width height, scale (negative = little-endian), rows bottom-up."""
    h, w = values.shape
    header = f"Pf\n{w} {h}\n{-1.0 if little_endian else 1.0}\n".encode()
    rows = np.ascontiguousarray(values[::-1]).astype("<f4" if little_endian else ">f4")
    return header + rows.tobytes()


def mask_png(mask: np.ndarray, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.fromarray((mask * 255).astype(np.uint8)).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def _finish(name, root, files, samples, as_tar, top, outer=None) -> SharpLayout:
    """Write `files` inside folder `top` (and `outer` at the archive top) as a tree or tar."""
    lead = f"{top}/" if top else ""
    files = {f"{lead}{k}": v for k, v in files.items()} | (outer or {})
    for s in samples:
        s.files = {k: f"{lead}{v}" for k, v in s.files.items()}
    root.mkdir(parents=True, exist_ok=True)
    path = write_tar(root / f"{name}.tar", files) if as_tar else write_tree(root / name, files)
    return SharpLayout(name, path, samples, top)


SINTEL_FRAMES = (("alley_1", 1), ("alley_1", 2), ("market_2", 1))


def make_sintel(root: Path, as_tar: bool = False, top: str = "", seed: int = 0) -> SharpLayout:
    """Final and clean renders, depth, and the files beside them that must not be read."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    samples = {"final": [], "clean": []}
    for i, (scene, number) in enumerate(SINTEL_FRAMES):
        frame = f"frame_{number:04d}"
        depth = raised_square(12.5 + i, 3.0 + i).astype(np.float32)
        depth[:2] = SINTEL_SKY  # far sky: outside the protocol's range
        files[f"training/depth/{scene}/{frame}.dpt"] = dpt_bytes(depth)
        files[f"training/depth_viz/{scene}/{frame}.png"] = png_bytes(_rgb(rng))
        files[f"training/camdata_left/{scene}/{frame}.cam"] = cam_bytes(*SINTEL_K)
        files[f"training/albedo/{scene}/{frame}.png"] = png_bytes(_rgb(rng))
        for render in samples:
            rgb = _rgb(rng)
            rel = f"training/{render}/{scene}/{frame}.png"
            files[rel] = png_bytes(rgb)
            names = {"rgb": rel, "depth": f"training/depth/{scene}/{frame}.dpt"}
            samples[render].append(SharpSample(rel[:-4], rgb, depth, None, names))
    layout = _finish("sintel", root, files, samples["final"] + samples["clean"], as_tar, top)
    layout.samples, layout.clean = layout.samples[:3], layout.samples[3:]
    return layout


IBIMS_LIST = ("corridor_01", "bathroom_02", "office_03")  # imagelist.txt order, not sorted
IBIMS_SCALE = 65535.0 / 50.0


def make_ibims(
    root: Path,
    as_tar: bool = False,
    top: str = "ibims1_core_raw",
    image_list: str | None = "beside",
    seed: int = 0,
) -> SharpLayout:
    """`ibims1_core_raw/` with `imagelist.txt` beside it ('beside'), inside it ('inside') or
    absent (None). Depth 10 m (13107) with a 20 m square (26214), zeros, invalid and
    transparent regions in the bottom rows."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    samples = []
    for i, name in enumerate(IBIMS_LIST):
        raw = raised_square(13107, 26214).astype(np.uint16)
        raw[20, 3 + i] = 0  # no measurement
        invalid = np.ones(SIZE, bool)
        invalid[21:, :8] = False
        transp = np.ones(SIZE, bool)
        transp[22:, 20:] = False
        rgb = _rgb(rng)
        names = {
            "rgb": f"rgb/{name}.png",
            "depth": f"depth/{name}.png",
            "mask_invalid": f"mask_invalid/{name}.png",
            "mask_transp": f"mask_transp/{name}.png",
        }
        files[names["rgb"]] = png_bytes(rgb)
        files[names["depth"]] = png_bytes(raw)
        files[names["mask_invalid"]] = mask_png(invalid, "L")
        files[names["mask_transp"]] = mask_png(transp, "1")
        files[f"calib/{name}.txt"] = b"559.62,558.14,361.87,241.69\n"
        depth = raw.astype(np.float32) / np.float32(IBIMS_SCALE)
        samples.append(SharpSample(f"rgb/{name}", rgb, depth, invalid & transp, names))
    listing = "".join(f"{n}\n" for n in IBIMS_LIST).encode()
    if image_list == "inside":
        files["imagelist.txt"] = listing
    outer = {"imagelist.txt": listing} if image_list == "beside" else None
    layout = _finish("ibims", root, files, samples, as_tar, top, outer)
    if image_list is None:
        layout.samples.sort(key=lambda s: s.key)
    return layout


MIDDLEBURY_CALIB = (
    "cam0=[1000.0 0 15.5; 0 1000.0 11.5; 0 0 1]\n"
    "cam1=[1000.0 0 19.5; 0 1000.0 11.5; 0 0 1]\n"
    "doffs=30.0\nbaseline=200.0\nwidth=32\nheight=24\nndisp=160\nisint=0\nvmin=40\nvmax=130\n"
    "dyavg=0\ndymax=0\n"
)
# depth = 200 mm * 1000 px / (d + 30 px) / 1000: d = 50 -> 2.5 m, d = 130 -> 1.25 m
MIDDLEBURY_DISPARITY = {"background": 50.0, "square": 130.0, "top_row": 170.0}
MIDDLEBURY_DEPTH = {"background": 2.5, "square": 1.25, "top_row": 1.0}


def make_middlebury(root: Path, as_tar: bool = False, top: str = "", seed: int = 0):
    """Two `<Scene>-perfect/` folders (one PFM little-endian, one big-endian); the top row
    has its own disparity so a PFM read top-down instead of bottom-up is caught."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    samples = []
    for i, scene in enumerate(("Adirondack", "Motorcycle")):
        d = MIDDLEBURY_DISPARITY
        disparity = raised_square(d["background"], d["square"])
        disparity[0] = d["top_row"]
        disparity[20:, 25:] = np.inf  # unknown
        folder = f"{scene}-perfect"
        rgb = _rgb(rng)
        files[f"{folder}/im0.png"] = png_bytes(rgb)
        files[f"{folder}/im1.png"] = png_bytes(_rgb(rng))
        files[f"{folder}/disp0.pfm"] = pfm_bytes(disparity, little_endian=i == 0)
        files[f"{folder}/disp1.pfm"] = pfm_bytes(disparity[:, ::-1])
        files[f"{folder}/calib.txt"] = MIDDLEBURY_CALIB.encode()
        with np.errstate(invalid="ignore"):
            depth = 200.0 * 1000.0 / (disparity + 30.0) / 1000.0
        depth = np.where(np.isfinite(disparity), depth, np.inf).astype(np.float32)
        names = {"rgb": f"{folder}/im0.png", "depth": f"{folder}/disp0.pfm"}
        names["calib"] = f"{folder}/calib.txt"
        samples.append(SharpSample(f"{folder}/im0", rgb, depth, None, names))
    return _finish("middlebury2014", root, files, samples, as_tar, top)
