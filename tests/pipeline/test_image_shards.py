"""Image shards: the writer, `ImageShardReader` and what reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from image_helpers import encode, gradient, jpeg, make_tar
from PIL import Image

from pipeline.images.decode import Accepted, decode_rgb, prepare_image
from pipeline.images.photos import sample_array
from pipeline.images.shards import ImageShardReader, ImageShardWriter, read_image_shard, shard_keys
from pipeline.toolkit import tario

# ---------------------------------------------------------------- shards


def write_demo_shard(path: Path) -> list[tuple[str, np.ndarray]]:
    photo = sample_array("chelsea")
    samples = [("k0", jpeg(photo)), ("k1", encode(Image.fromarray(gradient()), "PNG"))]
    expected = []
    with ImageShardWriter(path) as writer:
        for key, data in samples:
            result = prepare_image(data, f"in/{key}")
            assert isinstance(result, Accepted)
            writer.add(key, result.ext, result.data, f"in/{key}", result.height, result.width)
            expected.append((key, decode_rgb(result.data)))
    assert writer.count == 2 and len(writer.sha256) == 64
    return expected


def test_shard_roundtrip_and_deterministic_bytes(tmp_path: Path) -> None:
    expected = write_demo_shard(tmp_path / "a.tar")
    write_demo_shard(tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert shard_keys(tmp_path / "a.tar") == ["k0", "k1"]
    got = list(read_image_shard(tmp_path / "a.tar"))
    assert [k for k, _, _ in got] == ["k0", "k1"]
    for (key, rgb, meta), (_, want) in zip(got, expected, strict=True):
        assert np.array_equal(rgb, want)
        assert meta == {"origin": f"in/{key}", "size": list(want.shape[:2])}
    names = [m.name for m in tario.scan(tmp_path / "a.tar")]
    assert names == ["k0.jpg", "k0.json", "k1.png", "k1.json"]


def test_webdataset_reads_image_shards(tmp_path: Path) -> None:
    expected = dict(write_demo_shard(tmp_path / "000000.tar"))
    dataset = wds.WebDataset(str(tmp_path / "000000.tar"), shardshuffle=False).decode("rgb8")
    samples = list(dataset)
    assert [s["__key__"] for s in samples] == ["k0", "k1"]
    for s in samples:
        image = s.get("jpg", s.get("png"))
        assert image.dtype == np.uint8 and np.array_equal(image, expected[s["__key__"]])
        assert s["json"]["size"] == list(image.shape[:2])


def test_failed_shard_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "000000.tar"
    with pytest.raises(RuntimeError), ImageShardWriter(path) as writer:
        writer.add("k", "png", b"x", "o", 1, 1)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_an_image_shard_with_missing_or_inconsistent_members_is_refused(tmp_path: Path) -> None:
    path = make_tar(tmp_path / "bad.tar", {"k.jpg": jpeg(gradient())})
    with pytest.raises(tario.ShardError, match="exactly one"):
        list(read_image_shard(path))
    meta = b'{"origin": "o", "size": [5, 5]}'
    path = make_tar(tmp_path / "bad2.tar", {"k.jpg": jpeg(gradient()), "k.json": meta})
    with pytest.raises(tario.ShardError, match="decodes to 128x96"):
        list(read_image_shard(path))


# ---------------------------------------------------------------- random access


META = b'{"origin": "o", "size": [96, 128]}'


def test_reader_round_trip_key_order_and_random_access(tmp_path: Path) -> None:
    expected = dict(write_demo_shard(tmp_path / "a.tar"))
    reader = ImageShardReader(tmp_path / "a.tar")
    assert reader.keys == ["k0", "k1"] == shard_keys(tmp_path / "a.tar") and len(reader) == 2
    assert "k1" in reader and "k2" not in reader
    for key in reversed(reader.keys):  # by key, in any order
        data, ext = reader.read(key)
        assert ext == reader.ext(key) == {"k0": "jpg", "k1": "png"}[key]
        assert np.array_equal(decode_rgb(data), expected[key])
        assert np.array_equal(reader.rgb(key), expected[key])
        assert reader.meta(key) == {"origin": f"in/{key}", "size": list(expected[key].shape[:2])}
    with pytest.raises(KeyError, match=r"a\.tar: no key 'k2'"):
        reader.read("k2")
    reader.close()
    assert np.array_equal(reader.rgb("k0"), expected["k0"])  # reopened on demand
    reader.close()


@pytest.mark.parametrize(
    "members",
    [
        {"k.jpg": b"x", "k.png": b"x", "k.json": META},  # two images
        {"k.json": META},  # no image
        {"k.webp": b"x", "k.json": META},  # not a stored format
        {"k.jpg": b"x"},  # no metadata
        {"k.jpg": b"x", "k.json": META, "k.txt": b"x"},  # something else
    ],
)
def test_reader_refuses_a_sample_that_is_not_one_image_and_its_meta(
    tmp_path: Path, members: dict[str, bytes]
) -> None:
    path = make_tar(tmp_path / "000007.tar", {"a.png": b"x", "a.json": META, **members})
    with pytest.raises(tario.ShardError) as err:
        ImageShardReader(path)  # refused on opening, before anything is read
    message = str(err.value)
    assert message.startswith(f"{path}: key 'k' has members {sorted(m[2:] for m in members)}")
    assert "exactly one image (one of jpg, png) and one json" in message
    assert "pipeline prepare" in message


def test_reader_opens_its_own_file_after_fork_and_pickle(tmp_path: Path) -> None:
    import multiprocessing
    import pickle

    expected = dict(write_demo_shard(tmp_path / "a.tar"))
    reader = ImageShardReader(tmp_path / "a.tar")
    reader.read("k0")  # the parent has its file open
    copy = pickle.loads(pickle.dumps(reader))
    assert copy._fd is None and np.array_equal(copy.rgb("k1"), expected["k1"])
    copy.close()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply(_read_in_child, (reader,))
    assert got[0] != reader._pid and got[1] == reader.read("k1")[0]
    reader.close()


def _read_in_child(reader: ImageShardReader) -> tuple[int | None, bytes]:
    data = reader.read("k1")[0]
    return reader._pid, data
