"""Tar I/O: offsets reported by the writer match what a scan finds; deterministic bytes."""

from __future__ import annotations

import io

from pipeline.toolkit.tario import TarWriter, scan


def test_writer_offsets_match_scan_and_bytes_are_deterministic(tmp_path):
    blobs = []
    for attempt in range(2):
        buf = io.BytesIO()
        writer = TarWriter(buf)
        members = [writer.add("a.jpg", b"x" * 700), writer.add("k" * 95 + ".json", b"{}")]
        writer.close()
        path = tmp_path / f"{attempt}.tar"
        path.write_bytes(buf.getvalue())
        assert members == scan(path)
        with open(path, "rb") as f:
            f.seek(members[1].offset)
            assert f.read(2) == b"{}"
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
