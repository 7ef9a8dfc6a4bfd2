"""Image inputs: folders, WebDataset / SA-1B tars, single files and glob patterns → keyed items.

Listing is cheap: it reads directory entries and tar headers, never pixels. Every item has

- a key: stable (same input → same key on any machine) and a valid WebDataset key, made from the
  path relative to the input root (folder, or the fixed leading part of a glob) with the extension
  removed, or from the tar member's key; path separators become `__` and every other character
  outside `[A-Za-z0-9_-]` becomes `_` (names are NFC-normalised first, and the bytes of a name
  that is not valid UTF-8 written as `\\xNN`: `caf\\xe9.jpg` → `caf_xe9`); a key that would start
  with `_` or `-` gets the prefix `k` (`_a.jpg` → `k_a`), and keys longer than `MAX_KEY_LEN` are
  shortened with a hash suffix, so every key is one the label store accepts
  (`pipeline.dataset.layout.check_key`, checked for every key made);
- an origin for people: the input as the user wrote it joined with the relative part
  (`photos/a/b.jpg`, `data/sa_000000.tar:sa_1.jpg`), so it never depends on the working directory;
  undecodable bytes of a name are escaped (`folders.display_name`), so JSON and logs can hold it;
- a way to load its bytes (`Item.load`), picklable for worker processes.

Folders are walked by `pipeline.images.folders` (hidden entries skipped, symlinked folders
followed once, broken links found); files that are not images by their extension are skipped.
What is skipped on purpose is counted in a `Skipped` the caller passes. In a tar, the image member
of a key is the first of jpg, jpeg, png, webp, tif, tiff (case-insensitive); other members (SA-1B
mask `.json`, captions...) are ignored.

A damaged input never stops the listing: the intact members of a tar are listed as usual, and
each damaged part (a truncated or oversized image member, a corrupt header, a tar that cannot be
read at all; a broken symlink, a folder that cannot be listed) becomes one item whose `error` says
what is wrong and how to fix it. Loading such an item raises that error, so `prepare` records it
under `rejected` in dataset.json, like any bad image.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tarfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.dataset.layout import KEY_RE, check_key
from pipeline.images.folders import Skipped, display_name, unfollowable, walk_files
from pipeline.toolkit import tario

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")
TAR_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "tif", "tiff")  # preference order within a key
MAX_KEY_LEN = 80
KEY_PREFIX = "k"  # put before a key that would start with '_' or '-' (keys start alnum)
REDOWNLOAD = "re-download the tar (or re-create it)"
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_GLOB_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True, slots=True)
class Item:
    """One input image: where it is and how to read it (`offset` < 0: the whole file).

    An item with an `error` is a damaged part of an input (see `damaged_item`): `load` raises
    the error, so it is rejected like an unreadable image.
    """

    key: str
    origin: str
    path: str
    offset: int = -1
    size: int = -1
    error: str = ""

    def load(self) -> bytes:
        """The image file's bytes (a tar member is read in place, never extracted)."""
        if self.error:
            raise tario.ShardError(self.error)
        if self.offset < 0:
            return Path(self.path).read_bytes()
        member = tario.Member(self.origin, self.offset, self.size)
        with open(self.path, "rb") as f:
            return tario.read_member(f, member, Path(self.path))


def damaged_item(origin: str, path: str, error: str) -> Item:
    """An item that cannot be read, and why. Its key is its origin (which never is a valid key,
    so it cannot clash with the key of an image; prefixed with './' in case it would be one)."""
    origin = display_name(origin)
    key = f"./{origin}" if KEY_RE.match(origin) else origin
    return Item(key, origin, os.path.abspath(path), error=error)


def make_key(relative: str) -> str:
    """A WebDataset key from a relative path without extension (see the module docstring)."""
    text = unicodedata.normalize("NFC", display_name(relative)).strip("/")
    key = "__".join(_BAD_KEY_CHARS.sub("_", part) for part in text.split("/"))
    if not key:
        raise ValueError(f"cannot make a key from the empty name {relative!r}")
    if key[0] in "_-":  # label stores need a letter or digit first; other keys stay as they were
        key = KEY_PREFIX + key
    if len(key) > MAX_KEY_LEN:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = f"{key[: MAX_KEY_LEN - 17]}-{digest}"
    try:
        return check_key(key)  # the label store's rule too, so the two can never drift apart
    except ValueError as e:
        raise ValueError(f"cannot make a valid key from the name {relative!r}: {e}") from e


def _join(given: str, relative: str) -> str:
    """The origin of a file: the input as given joined with the relative part."""
    return str(PurePosixPath(given.replace(os.sep, "/")) / relative) if relative else given


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(".tar")


def file_item(path: str, origin: str, relative: str) -> Item:
    """An item for one image file; `relative` (with extension) makes the key."""
    stem = relative.rsplit(".", 1)[0]
    size = os.stat(path).st_size
    return Item(make_key(stem), display_name(origin), os.path.abspath(path), -1, size)


def folder_items(
    folder: str, root: str | None = None, skipped: Skipped | None = None
) -> list[Item]:
    """Images under `folder`, recursively; keys relative to `root` (default: the folder)."""
    skipped = Skipped() if skipped is None else skipped
    prefix = os.path.relpath(folder, root).replace(os.sep, "/") if root is not None else "."
    out = []
    for found in walk_files(folder, skipped):
        if found.error:
            out.append(damaged_item(_join(folder, found.rel), found.path, found.error))
        elif is_image_name(found.rel):
            key_rel = found.rel if prefix == "." else f"{prefix}/{found.rel}"
            out.append(file_item(found.path, _join(folder, found.rel), key_rel))
        else:
            skipped.add_extension(found.rel)
    return out


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset's split: key = directory + basename up to its first dot; ext = the rest."""
    while name.startswith("./"):
        name = name[2:]
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


@dataclass(frozen=True, slots=True)
class TarDamage:
    """A part of an input tar that cannot be read: `member` names it ('' for the tar itself)."""

    member: str
    reason: str


def _is_tar_image(name: str) -> bool:
    return _split_member(name)[1].lower() in TAR_IMAGE_EXTS


def _header_damage(path: Path, position: int, last: str | None) -> TarDamage | None:
    """Whether tarfile stopped listing at `position` on a damaged header rather than at the end.

    tarfile ends the listing silently at a bad or cut-off header after the first one; the end of
    a tar is zero blocks (or, from some writers, nothing), so anything else there is damage.
    """
    with open(path, "rb") as f:
        f.seek(position)
        block = f.read(tarfile.BLOCKSIZE)
    if not block.strip(b"\0"):
        return None
    after = f" (after member {last!r})" if last is not None else ""
    what = "is cut off" if len(block) < tarfile.BLOCKSIZE else "is corrupt"
    return TarDamage(
        "",
        f"the tar header at byte {position}{after} {what}, so the members from there on "
        f"cannot be read; {REDOWNLOAD}",
    )


def scan_input_tar(path: Path) -> tuple[list[tario.Member], list[TarDamage]]:
    """The intact regular-file members of an input tar, and its damaged parts.

    Headers are validated like `tario.scan`, but damage is reported, not raised: a member whose
    data runs past the end of the file (a cut-off download) ends the listing there, as nothing
    after it can be read; an oversized image member is skipped (oversized other members are never
    read, so they do not matter); a tar that cannot be read at all gives one `TarDamage` for the
    whole tar. An unsafe member name still raises `tario.ShardError` (a hostile tar).

    Unlike our own shards, tars made with `tar cf` hold directory entries (and maybe links):
    those are skipped, as WebDataset does.
    """
    file_size = path.stat().st_size
    members: list[tario.Member] = []
    damage: list[TarDamage] = []
    last: str | None = None
    try:
        with tarfile.open(path, mode="r:") as tf:
            for info in tf:
                tario.check_member_name(path, info.name)
                last = info.name
                if not info.isreg():
                    continue
                end = info.offset_data + info.size
                if end > file_size:
                    missing = end - file_size
                    reason = (
                        f"member {info.name!r} is truncated (its last {missing} B are missing: the "
                        f"tar is cut off), so it and any members after it cannot be read; "
                        f"{REDOWNLOAD}"
                    )
                    return members, [*damage, TarDamage(info.name, reason)]
                if info.size > tario.MAX_MEMBER_BYTES:
                    if _is_tar_image(info.name):
                        limit = tario.MAX_MEMBER_BYTES
                        reason = f"member {info.name!r} is oversized ({info.size} B > {limit} B)"
                        damage.append(TarDamage(info.name, f"{reason}; {REDOWNLOAD}"))
                    continue
                members.append(tario.Member(info.name, info.offset_data, info.size))
            stop = tf.offset  # where the listing ended: the end-of-archive blocks, or damage
    except (tarfile.TarError, OSError) as e:
        after = f" after member {last!r}" if last is not None else ""
        reason = f"not a readable uncompressed tar ({e}){after}; {REDOWNLOAD}"
        return members, [*damage, TarDamage("", reason)]
    cut = _header_damage(path, stop, last)
    return members, (damage if cut is None else [*damage, cut])


def tar_items(tar: str) -> list[Item]:
    """One item per key that has an image member, plus one per damaged part; nothing extracted."""
    members, damage = scan_input_tar(Path(tar))
    groups: dict[str, dict[str, tario.Member]] = {}
    for member in members:
        stem, ext = _split_member(member.name)
        exts = groups.setdefault(stem, {})
        if ext.lower() in exts:
            raise tario.ShardError(f"{tar}: member {member.name!r} appears twice; fix the tar")
        exts[ext.lower()] = member
    out = []
    path = os.path.abspath(tar)  # one string shared by all items: SA-1B lists millions
    for stem, exts in groups.items():
        ext = next((e for e in TAR_IMAGE_EXTS if e in exts), None)
        if ext is not None and stem:
            m = exts[ext]
            origin = display_name(f"{tar}:{m.name}")
            out.append(Item(make_key(stem), origin, path, m.offset, m.size))
    for bad in damage:
        origin = f"{tar}:{bad.member}" if bad.member else tar
        out.append(damaged_item(origin, path, f"{display_name(tar)}: {bad.reason}"))
    return out


def glob_root(pattern: str) -> str:
    """The leading directories of a glob pattern that contain no wildcard ('' for none)."""
    parts = pattern.replace(os.sep, "/").split("/")
    fixed = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return "/".join(fixed) if fixed != [""] else "/"


def glob_items(pattern: str, skipped: Skipped | None = None) -> list[Item]:
    """Images, tars and folders matched by a glob (`**` recurses); keys relative to its root."""
    skipped = Skipped() if skipped is None else skipped
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise ValueError(f"--images {pattern}: the pattern matches nothing; check it (quote it)")
    root = glob_root(pattern) or "."
    out: list[Item] = []
    for match in matches:
        if os.path.isdir(match):
            out.extend(folder_items(match, root=root, skipped=skipped))
        elif not os.path.exists(match):  # glob lists names: this one is a broken symlink
            out.append(damaged_item(match, match, unfollowable(match)))
        elif not os.path.isfile(match):
            skipped.special += 1
        elif is_tar_name(match):
            out.extend(tar_items(match))
        elif is_image_name(match):
            rel = os.path.relpath(match, root).replace(os.sep, "/")
            out.append(file_item(match, match.replace(os.sep, "/"), rel))
        else:
            skipped.add_extension(match)
    return out


def input_items(spec: str, skipped: Skipped | None = None) -> list[Item]:
    """All items of one `--images` argument; raises if it is missing or holds no images."""
    if _GLOB_MAGIC.search(spec) and not os.path.exists(spec):
        items = glob_items(spec, skipped)
    elif os.path.isdir(spec):
        items = folder_items(spec, skipped=skipped)
    elif os.path.isfile(spec) and is_tar_name(spec):
        items = tar_items(spec)
    elif os.path.isfile(spec) and is_image_name(spec):
        items = [file_item(spec, spec.replace(os.sep, "/"), os.path.basename(spec))]
    elif os.path.islink(spec) and not os.path.exists(spec):
        raise ValueError(f"--images {display_name(spec)}: {unfollowable(spec)}")
    elif os.path.isfile(spec):
        raise ValueError(
            f"--images {spec}: not a folder, an uncompressed .tar or an image "
            f"({', '.join(IMAGE_SUFFIXES)}); decompress .tar.gz files first"
        )
    else:
        raise ValueError(f"--images {spec}: no such file or folder")
    if not items:
        hint = "check the path"
        if os.path.isdir(spec) and any(Path(spec).glob("*.tar")):
            hint = f"it holds .tar files: pass them with a glob, e.g. --images '{spec}/*.tar'"
        raise ValueError(
            f"--images {spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files "
            f"and tar members); {hint}"
        )
    return items


def check_unique(items: Iterable[Item]) -> None:
    """Raise naming both origins of every duplicate key (up to 10) and how to fix it."""
    seen: dict[str, str] = {}
    clashes = []
    for item in items:
        first = seen.get(item.key)
        if first is None:
            seen[item.key] = item.origin
        else:
            what = (
                f"{first} is listed twice" if first == item.origin else f"{first} and {item.origin}"
            )
            clashes.append(f"  key {item.key!r}: {what}")
    if clashes:
        more = f"\n  ... and {len(clashes) - 10} more" if len(clashes) > 10 else ""
        raise ValueError(
            f"{len(clashes)} duplicate image key(s):\n" + "\n".join(clashes[:10]) + more + "\n"
            "Keys come from the path relative to each --images folder without its extension "
            "(or from the tar member name), so they must be unique across all inputs: rename one "
            "of the files, or pass their common parent folder as a single --images so the keys "
            "include the sub-folder; an input given twice must be given once."
        )


def list_items(inputs: list[str], skipped: Skipped | None = None) -> list[Item]:
    """Every item of every input, duplicates checked, sorted by key; what was skipped on purpose
    is counted into `skipped`."""
    if not inputs:
        raise ValueError("no inputs: give at least one --images PATH")
    items = [item for spec in inputs for item in input_items(spec, skipped)]
    check_unique(items)
    return sorted(items, key=lambda item: item.key)


def listing_sha256(items: Iterable[Item]) -> str:
    """A fingerprint of what the inputs list (key, origin, byte size), in order."""
    h = hashlib.sha256()
    for item in items:
        h.update(f"{item.key}\t{item.origin}\t{item.size}\n".encode())
    return h.hexdigest()
