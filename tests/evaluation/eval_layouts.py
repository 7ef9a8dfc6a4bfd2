"""Writers of small synthetic benchmarks in Marigold's preprocessed layouts, as a directory or
an uncompressed tar, with what a loader must return for each sample.

`make_layout("nyu", tmp_path)` writes a dataset and returns a `WrittenLayout` (its path, the
split list written next to it, the expected samples); `write_layout(...)` returns the path only.
Images are 48x64 except KITTI (375x1242, the real size, since the loader crops 352x1216).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

LAYOUT_NAMES = ("nyu", "kitti", "eth3d", "scannet", "diode")
SIZE = (48, 64)
KITTI_SIZE = (375, 1242)
KITTI_TOP, KITTI_LEFT = KITTI_SIZE[0] - 352, (KITTI_SIZE[1] - 1216) // 2
KITTI_MARKER = ((KITTI_TOP + 5, KITTI_LEFT + 7), 4321)  # (row, col) before the crop, uint16
SPLIT_NAME = "filename_list.txt"


@dataclass
class WrittenSample:
    """One sample as the loader must return it, and where its files are (archive paths)."""

    key: str
    rgb: np.ndarray
    depth: np.ndarray
    valid_mask: np.ndarray | None
    files: dict[str, str]  # "rgb", "depth", ("mask") -> path relative to the archive top


@dataclass
class WrittenLayout:
    name: str
    path: Path
    split: Path | None
    samples: list[WrittenSample]  # in split-list order
    skipped: list[str] = field(default_factory=list)  # RGB paths without ground truth
    top: str = ""
    prefix: str = ""  # the dataset root inside the archive: top folder (+ DIODE's val/)

    def arg(self, with_split: bool = True, **options: str) -> str:
        """The `NAME=PATH[,split=FILE][,option=value]` argument of this dataset."""
        parts = [f"{self.name}={self.path}"]
        if with_split and self.split is not None:
            parts.append(f"split={self.split}")
        parts += [f"{k}={v}" for k, v in options.items()]
        return ",".join(parts)

    def sorted_samples(self) -> list[WrittenSample]:
        """The order of discovery: by key."""
        return sorted(self.samples, key=lambda s: s.key)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    """What PIL decodes from `data` (the expected RGB of a lossy JPEG)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _rgb(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def _u16(rng: np.random.Generator, size: tuple[int, int], high: int) -> np.ndarray:
    values = rng.integers(1, high, size, dtype=np.uint16)
    values[rng.random(size) < 0.1] = 0  # no measurement
    return values


@dataclass
class _Item:
    """What one sample contributes: files, a split line, the expected sample."""

    files: dict[str, bytes]
    line: str
    sample: WrittenSample | None  # None: an entry without ground truth


def _nyu(i: int, rng: np.random.Generator) -> _Item:
    stem = f"test/{('bathroom', 'kitchen')[i % 2]}/%s_{i:04d}.png"
    rgb, depth = _rgb(rng, SIZE), _u16(rng, SIZE, 10000)
    files = {"rgb": stem % "rgb", "depth": stem % "depth"}
    payload = {
        files["rgb"]: png_bytes(rgb),
        files["depth"]: png_bytes(depth),
        stem % "filled": png_bytes(np.full(SIZE, 5000, np.uint16)),  # must not be read
    }
    line = f"{files['rgb']} {files['depth']} {stem % 'filled'}"
    expected = depth.astype(np.float32) / np.float32(1000)
    key = files["rgb"][:-4]
    return _Item(payload, line, WrittenSample(key, rgb, expected, None, files))


def _scannet(i: int, rng: np.random.Generator) -> _Item:
    scene = f"scene{100 + i % 2:04d}_00"
    files = {"rgb": f"{scene}/color/{i * 100:06d}.jpg", "depth": f"{scene}/depth/{i * 100:06d}.png"}
    rgb, depth = jpg_bytes(_rgb(rng, SIZE)), _u16(rng, SIZE, 10000)
    payload = {files["rgb"]: rgb, files["depth"]: png_bytes(depth)}
    expected = depth.astype(np.float32) / np.float32(1000)
    key = files["rgb"][:-4]
    line = f"{files['rgb']} {files['depth']}"
    return _Item(payload, line, WrittenSample(key, decoded(rgb), expected, None, files))


def _eth3d(i: int, rng: np.random.Generator) -> _Item:
    """Depth files alternate between the two folder forms found in the wild."""
    scene = ("courtyard", "office")[i % 2]
    name = f"DSC_{i:04d}.JPG"
    folder = f"{scene}_dslr_depth/{scene}" if i % 2 else scene
    files = {
        "rgb": f"rgb/{scene}/images/dslr_images/{name}",
        "depth": f"depth/{folder}/ground_truth_depth/dslr_images/{name}",
    }
    rgb = jpg_bytes(_rgb(rng, SIZE))
    depth = rng.uniform(0.5, 50.0, SIZE).astype(np.float32)
    depth[rng.random(SIZE) < 0.1] = np.inf
    payload = {files["rgb"]: rgb, files["depth"]: depth.astype("<f4").tobytes()}
    line = f"{files['rgb']} {files['depth']}"
    return _Item(payload, line, WrittenSample(files["rgb"][:-4], decoded(rgb), depth, None, files))


def _diode(i: int, rng: np.random.Generator) -> _Item:
    """Even samples indoors, odd ones outdoor; files under `val/` as in the tar."""
    sub = ("indoors", "outdoor")[i % 2]
    stem = f"{sub}/scene_{19 + i:05d}/scan_00183/{19 + i:05d}_00183_{sub}_{i:03d}_010"
    rel = {"rgb": f"{stem}.png", "depth": f"{stem}_depth.npy", "mask": f"{stem}_depth_mask.npy"}
    rgb = _rgb(rng, SIZE)
    depth = rng.uniform(0.6, 300.0, (*SIZE, 1)).astype(np.float32)
    mask = (rng.random(SIZE) < 0.8).astype(np.float32)
    payload = {
        f"val/{rel['rgb']}": png_bytes(rgb),
        f"val/{rel['depth']}": npy_bytes(depth),
        f"val/{rel['mask']}": npy_bytes(mask),
    }
    files = {k: f"val/{v}" for k, v in rel.items()}
    line = f"{rel['rgb']} {rel['depth']} {rel['mask']}"  # Marigold's lists omit val/
    return _Item(payload, line, WrittenSample(stem, rgb, depth[..., 0], mask != 0, files))


def _kitti(i: int, rng: np.random.Generator, with_gt: bool = True) -> _Item:
    drive, frame = "2011_09_26_drive_0002_sync", f"{69 + i:010d}"
    files = {
        "rgb": f"2011_09_26/{drive}/image_02/data/{frame}.png",
        "depth": f"{drive}/proj_depth/groundtruth/image_02/{frame}.png",
    }
    rgb = np.kron(_rgb(rng, (KITTI_SIZE[0], KITTI_SIZE[1] // 2)), np.ones((1, 2, 1), np.uint8))
    rgb = np.ascontiguousarray(rgb[:, : KITTI_SIZE[1]])
    if not with_gt:
        line = f"{files['rgb']} None 721.5377"
        return _Item({files["rgb"]: png_bytes(rgb)}, line, None)
    gt = np.zeros(KITTI_SIZE, np.uint16)
    sparse = rng.random(KITTI_SIZE) < 0.05
    gt[sparse] = rng.integers(1, 80 * 256, int(sparse.sum()), dtype=np.uint16)
    (row, col), value = KITTI_MARKER
    gt[row, col] = value
    payload = {files["rgb"]: png_bytes(rgb), files["depth"]: png_bytes(gt)}
    crop = (slice(KITTI_TOP, KITTI_TOP + 352), slice(KITTI_LEFT, KITTI_LEFT + 1216))
    expected = gt[crop].astype(np.float32) / np.float32(256)
    line = f"{files['rgb']} {files['depth']} 721.5377"
    return _Item(payload, line, WrittenSample(files["rgb"][:-4], rgb[crop], expected, None, files))


WRITERS: dict[str, Callable[[int, np.random.Generator], _Item]] = {
    "nyu": _nyu,
    "scannet": _scannet,
    "eth3d": _eth3d,
    "diode": _diode,
    "kitti": _kitti,
}


def write_tar(
    path: Path, files: dict[str, bytes], dir_entries: bool = True, dot_slash: bool = False
) -> Path:
    """An uncompressed tar of `files`, with a directory entry before each folder's files
    (as `tar` writes them) and optionally Marigold's `./` name prefix."""
    lead = "./" if dot_slash else ""
    with tarfile.open(path, "w") as tf:
        done: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1) if dir_entries else ():
                folder = "/".join(parts[:depth])
                if folder not in done:
                    done.add(folder)
                    info = tarfile.TarInfo(lead + folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(info)
            info = tarfile.TarInfo(lead + name)
            info.size = len(files[name])
            tf.addfile(info, io.BytesIO(files[name]))
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def make_layout(
    name: str,
    root: Path,
    n: int = 3,
    as_tar: bool = False,
    with_split: bool = True,
    top: str = "",
    split_inside: bool = False,
    dot_slash: bool = False,
    seed: int = 0,
) -> WrittenLayout:
    """Write `n` samples of benchmark `name` under `root` (KITTI adds one RGB without ground
    truth), as `root/<name>` or `root/<name>.tar`, inside folder `top` when given. The split
    list, in reverse key order, goes to `root/<name>_split.txt` (with_split) or to the top of
    the dataset (split_inside). A README.txt that is no split list sits at the archive top."""
    rng = np.random.default_rng(seed)
    items = [WRITERS[name](i, rng) for i in range(n)]
    if name == "kitti":
        items.append(_kitti(n, rng, with_gt=False))
    items.reverse()
    lead = f"{top}/" if top else ""
    files = {f"{lead}{k}": v for item in items for k, v in item.files.items()}
    files["README.txt"] = b"Synthetic benchmark written by the evaluation tests.\n"
    lines = "".join(item.line + "\n" for item in items).encode()
    if split_inside:
        files[f"{lead}{SPLIT_NAME}"] = lines
    root.mkdir(parents=True, exist_ok=True)
    split = root / f"{name}_split.txt" if with_split else None
    if split is not None:
        split.write_bytes(lines)
    if as_tar:
        path = write_tar(root / f"{name}.tar", files, dot_slash=dot_slash)
    else:
        path = write_tree(root / name, files)
    samples = [i.sample for i in items if i.sample is not None]
    for s in samples:
        s.files = {k: f"{lead}{v}" for k, v in s.files.items()}
    skipped = [i.line.split()[0] for i in items if i.sample is None]
    prefix = lead + ("val/" if name == "diode" else "")
    return WrittenLayout(name, path, split, samples, skipped, top, prefix)


def write_layout(
    name: str, root: Path, n: int = 3, as_tar: bool = False, with_split: bool = True, **kw
) -> Path:
    """`make_layout(...).path`: the directory or .tar of a synthetic benchmark."""
    return make_layout(name, root, n=n, as_tar=as_tar, with_split=with_split, **kw).path
