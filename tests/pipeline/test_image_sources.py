"""Image inputs: keys, folders, globs and tars (WebDataset, SA-1B), damaged and hostile tars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from image_helpers import gradient, jpeg, make_tar

from pipeline.dataset.layout import KEY_RE
from pipeline.images.folders import Skipped
from pipeline.images.sources import input_items, list_items, make_key, tar_items
from pipeline.toolkit import tario

# ---------------------------------------------------------------- sources


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_keys_are_nfc_normalized_sanitized_and_hashed_past_80_chars() -> None:
    assert make_key("a/b/c.d e") == "a__b__c_d_e"
    assert make_key("sa_1") == "sa_1"
    assert make_key("caf\u00e9") == make_key("cafe\u0301") == "caf_"  # NFC first
    long = make_key("x" * 200)
    assert len(long) == 80 and long == make_key("x" * 200) and long != make_key("x" * 199)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("_under", "k_under"),
        ("-dash", "k-dash"),
        ("\u00e9", "k_"),
        (" space", "k_space"),
        ("(1) copy", "k_1__copy"),
        ("/_a/b", "k_a__b"),
        ("a/_b", "a___b"),  # already valid: unchanged
        ("9lives", "9lives"),
    ],
)
def test_make_key_starts_with_a_letter_or_digit(name: str, key: str) -> None:
    assert make_key(name) == key and KEY_RE.match(key)


def test_long_keys_stay_valid_and_stable() -> None:
    for name in ("_" * 200, "\u00e9" * 100, "a/" * 100 + "b", "x" * 80, "x" * 81):
        key = make_key(name)
        assert KEY_RE.match(key) and len(key) <= 80 and key == make_key(name), name
    assert make_key("x" * 80) == "x" * 80
    assert make_key("_" * 200).startswith("k___") and make_key("_" * 200) != make_key("_" * 199)


def test_folder_recursive_keys_and_origins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "photos/a/b.jpg", data)
    write(tmp_path / "photos/c.d.JPEG", data)
    write(tmp_path / "photos/e f.Png", data)
    write(tmp_path / "photos/notes.txt", b"x")
    write(tmp_path / "photos/.hidden.jpg", data)
    write(tmp_path / "photos/.cache/z.jpg", data)
    items = list_items(["photos/"])
    assert [(i.key, i.origin) for i in items] == [
        ("a__b", "photos/a/b.jpg"),
        ("c_d", "photos/c.d.JPEG"),
        ("e_f", "photos/e f.Png"),
    ]
    assert items[0].load() == data


def test_webdataset_tar_and_sa1b_tar(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    make_tar(
        tmp_path / "wds.tar",
        {"d/k1.jpg": data, "d/k1.cls": b"3", "d/k2.png": data, "d/k3.txt": b"no image"},
        dirs=("d",),
    )
    make_tar(
        tmp_path / "sa_000000.tar", {"./sa_1.jpg": data, "./sa_1.json": b'{"annotations": []}'}
    )
    items = list_items(["wds.tar", "sa_000000.tar"])
    assert [(i.key, i.origin) for i in items] == [
        ("d__k1", "wds.tar:d/k1.jpg"),
        ("d__k2", "wds.tar:d/k2.png"),
        ("sa_1", "sa_000000.tar:./sa_1.jpg"),
    ]
    assert all(i.load() == data for i in items)


def test_glob_and_several_inputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "set1/x/a.jpg", data)
    write(tmp_path / "set1/y/b.png", data)
    write(tmp_path / "set1/y/skip.txt", data)
    make_tar(tmp_path / "shards/s0.tar", {"t0.jpg": data})
    make_tar(tmp_path / "shards/s1.tar", {"t1.jpg": data})
    items = list_items(["set1/*/*", "shards/*.tar"])
    assert [(i.key, i.origin) for i in items] == [
        ("t0", "shards/s0.tar:t0.jpg"),
        ("t1", "shards/s1.tar:t1.jpg"),
        ("x__a", "set1/x/a.jpg"),
        ("y__b", "set1/y/b.png"),
    ]
    recursive = list_items(["set1/**/*.jpg"])
    assert [(i.key, i.origin) for i in recursive] == [("x__a", "set1/x/a.jpg")]


def test_duplicate_keys_name_both_origins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "one/a.jpg", data)
    write(tmp_path / "two/a.png", data)
    with pytest.raises(ValueError, match="one/a.jpg and two/a.png") as err:
        list_items(["one", "two"])
    assert "rename one of the files" in str(err.value)
    write(tmp_path / "one/a.png", data)
    with pytest.raises(ValueError, match="one/a.jpg and one/a.png"):
        list_items(["one"])


def test_missing_or_empty_inputs_are_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--images missing: no such file"):
        input_items("missing")
    with pytest.raises(ValueError, match="matches nothing"):
        input_items("nothing/*.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--images empty: no images found"):
        input_items("empty")
    make_tar(tmp_path / "tars/a.tar", {"a.jpg": jpeg(gradient())})
    with pytest.raises(ValueError, match="--images 'tars/\\*.tar'"):
        input_items("tars")
    assert [i.key for i in input_items("tars/*.tar")] == ["a"]
    write(tmp_path / "x.tar.gz", b"\x1f\x8b")
    with pytest.raises(ValueError, match="decompress"):
        input_items("x.tar.gz")
    write(tmp_path / "bad.tar", b"garbage" * 100)
    [bad] = input_items("bad.tar")  # listed, to be rejected by prepare; never fatal
    assert (bad.key, bad.origin) == ("bad.tar", "bad.tar")
    with pytest.raises(tario.ShardError, match="bad.tar: not a readable uncompressed tar"):
        bad.load()


def test_truncated_tar_lists_intact_members_and_the_damage(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    full = make_tar(tmp_path / "t.tar", {"a.jpg": data, "b.jpg": data, "c.jpg": data})
    raw = full.read_bytes()
    b_start = 512 + -(-len(data) // 512) * 512 + 512  # a's header and padded data, b's header
    write(tmp_path / "cut.tar", raw[: b_start + len(data) // 2])
    items = tar_items("cut.tar")
    assert [(i.key, i.origin, bool(i.error)) for i in items] == [
        ("a", "cut.tar:a.jpg", False),
        ("cut.tar:b.jpg", "cut.tar:b.jpg", True),
    ]
    assert items[0].load() == data
    with pytest.raises(tario.ShardError, match="cut.tar: member 'b.jpg' is truncated") as err:
        items[1].load()
    assert "re-download the tar" in str(err.value)
    assert tar_items("cut.tar") == items  # deterministic


@pytest.mark.parametrize(
    ("cut", "what"), [("header", "is cut off"), ("garbage", "is corrupt")], ids=str
)
def test_damaged_header_after_a_member_is_reported(
    tmp_path: Path, monkeypatch, cut: str, what: str
) -> None:
    """tarfile stops listing silently at such a header; the damage must not go unnoticed."""
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    raw = make_tar(tmp_path / "t.tar", {"a.jpg": data, "b.jpg": data}).read_bytes()
    b_header = 512 + -(-len(data) // 512) * 512
    if cut == "header":
        damaged = raw[: b_header + 100]
    else:
        damaged = raw[:b_header] + b"x" * 512 + raw[b_header + 512 :]
    write(tmp_path / "d.tar", damaged)
    [good, bad] = tar_items("d.tar")
    assert (good.key, good.error) == ("a", "") and good.load() == data
    assert bad.origin == "d.tar"
    assert f"header at byte {b_header} (after member 'a.jpg') {what}" in bad.error
    assert "re-download the tar" in bad.error


def test_tar_ends_are_not_damage(tmp_path: Path) -> None:
    data = jpeg(gradient())
    raw = make_tar(tmp_path / "t.tar", {"a.jpg": data}).read_bytes()
    end = 512 + -(-len(data) // 512) * 512
    for n, tail in enumerate((raw, raw[:end], raw[: end + 700])):  # full, no end blocks, half
        write(tmp_path / f"{n}.tar", tail)
        assert [(i.key, i.error) for i in tar_items(str(tmp_path / f"{n}.tar"))] == [("a", "")]


def test_tar_with_unsafe_member_refused(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "evil.tar", {"../escape.jpg": jpeg(gradient())})
    with pytest.raises(tario.ShardError, match="unsafe member"):
        input_items(str(path))


# ---------------------------------------------------------------- odd names and symlinks


def test_a_name_not_in_utf8_gets_an_escaped_key_and_origin(tmp_path: Path, monkeypatch) -> None:
    """`caf\\xe9.jpg` (Latin-1 bytes) used to make the whole run fail on a surrogate."""
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    (tmp_path / "photos").mkdir()
    with open(os.fsencode(tmp_path / "photos") + b"/caf\xe9.jpg", "wb") as f:
        f.write(data)
    write(tmp_path / "photos/caf\u00e9.jpg", data)  # the same name in UTF-8: another key
    tarred = os.fsdecode(b"t\xe9.jpg")
    make_tar(tmp_path / "in.tar", {tarred: data})
    items = list_items(["photos", "in.tar"])
    assert [(i.key, i.origin) for i in items] == [
        ("caf_", "photos/caf\u00e9.jpg"),
        ("caf_xe9", "photos/caf\\xe9.jpg"),
        ("t_xe9", "in.tar:t\\xe9.jpg"),
    ]
    assert all(i.load() == data for i in items) and all(KEY_RE.match(i.key) for i in items)
    json.dumps([i.origin for i in items], ensure_ascii=False).encode()  # writable anywhere
    assert [i.key for i in list_items(["photos", "in.tar"])] == [i.key for i in items]  # stable


def test_a_self_referencing_symlink_is_listed_with_its_reason(tmp_path: Path, monkeypatch) -> None:
    """It used to stop the listing with ELOOP."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in/a.jpg", jpeg(gradient()))
    os.symlink("x.jpg", tmp_path / "in/x.jpg")
    os.symlink("y", tmp_path / "in/y")  # no extension: might have been a folder
    for spec in ("in", "in/*"):
        items = list_items([spec])
        assert [(i.key, i.error != "") for i in items] == [
            ("a", False),
            ("in/x.jpg", True),
            ("in/y", True),
        ], spec
        with pytest.raises(tario.ShardError, match="a symlink loop: its target 'x.jpg'"):
            items[1].load()
        assert "fix or remove the link" in items[2].error
    with pytest.raises(ValueError, match="--images in/x.jpg: a symlink loop"):
        input_items("in/x.jpg")
    write(tmp_path / "notes.txt", b"x")
    os.symlink("../notes.txt", tmp_path / "in/notes.jpg.txt")  # a working link: not "broken"
    with pytest.raises(ValueError, match="--images in/notes.jpg.txt: not a folder, an"):
        input_items("in/notes.jpg.txt")


def test_symlinked_folders_are_followed_once(tmp_path: Path, monkeypatch) -> None:
    """A linked folder used to be ignored; a folder reached twice is listed once, cycles end."""
    monkeypatch.chdir(tmp_path)
    data = jpeg(gradient())
    write(tmp_path / "in/a/1.jpg", data)
    write(tmp_path / "ext/b/2.jpg", data)
    os.symlink("../ext", tmp_path / "in/linked")  # outside the input: followed
    os.symlink("a", tmp_path / "in/0again")  # sorts first; the real path keeps the key
    os.symlink(".", tmp_path / "in/cycle")
    os.symlink("../../in", tmp_path / "ext/b/back")  # a cycle through the linked folder
    skipped = Skipped()
    items = list_items(["in"], skipped)
    assert [(i.key, i.origin) for i in items] == [
        ("a__1", "in/a/1.jpg"),
        ("linked__b__2", "in/linked/b/2.jpg"),
    ]
    assert items[1].load() == data
    assert skipped.linked_folders == 3 and skipped.describe() == "3 linked folders listed already"


def test_dangling_links_are_listed_and_skipped_files_counted(tmp_path: Path, monkeypatch) -> None:
    """A dangling link and the files of other extensions used to vanish without a word."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in/ok.jpg", jpeg(gradient()))
    write(tmp_path / "in/notes.txt", b"x")
    write(tmp_path / "in/sub/README", b"x")
    write(tmp_path / "in/sub/photo.HEIC", b"x")
    write(tmp_path / "in/.DS_Store", b"x")
    write(tmp_path / "in/.git/config", b"x")
    os.symlink("missing.jpg", tmp_path / "in/gone.jpg")
    os.mkfifo(tmp_path / "in/pipe.jpg")  # reading it would block forever
    skipped = Skipped()
    items = list_items(["in"], skipped)
    assert [(i.key, i.origin) for i in items] == [
        ("in/gone.jpg", "in/gone.jpg"),
        ("ok", "in/ok.jpg"),
    ]
    with pytest.raises(tario.ShardError, match="a broken symlink: its target 'missing.jpg' does"):
        items[0].load()
    assert skipped.to_json() == {
        "extension": {"": 1, ".heic": 1, ".txt": 1},
        "hidden": 2,
        "linked_folders": 0,
        "special": 1,
    }
    assert skipped.describe() == (
        "3 non-image files (no extension: 1, .heic: 1, .txt: 1), 2 hidden entries, "
        "1 fifo, socket or device"
    )
    globbed = Skipped()
    assert [i.key for i in list_items(["in/*"], globbed)] == ["in/gone.jpg", "ok"]
    assert globbed.extension == {".txt": 1, "": 1, ".heic": 1} and globbed.special == 1


def test_a_damaged_item_never_takes_the_key_of_an_image(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "foo.jpg", jpeg(gradient()))
    os.symlink("nowhere", tmp_path / "foo")
    items = list_items(["."])
    assert [(i.key, i.origin, bool(i.error)) for i in items] == [
        ("./foo", "foo", True),
        ("foo", "foo.jpg", False),
    ]
