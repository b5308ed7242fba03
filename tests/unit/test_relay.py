from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dbstash.errors import UploadFailed
from dbstash.parts.relay import CHUNK, Relay, TransferStats


def _feed(fd: int, data: bytes, piece: int) -> None:
    for i in range(0, len(data), piece):
        os.write(fd, data[i : i + piece])
    os.close(fd)


def _drain(fd: int, out: bytearray) -> None:
    while chunk := os.read(fd, 1 << 16):
        out.extend(chunk)


def _through(make: Callable[[int, int], Relay], data: bytes, piece: int) -> tuple[Relay, TransferStats, bytes]:
    """Feed *data* (in writes of *piece*) through the relay *make* builds between two pipes."""
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    got = bytearray()
    feeder = threading.Thread(target=_feed, args=(src_w, data, piece))
    drainer = threading.Thread(target=_drain, args=(dst_r, got))
    feeder.start()
    drainer.start()
    relay = make(src_r, dst_w)
    stats = relay.run()
    os.fstat(dst_w)  # the relay never closes the destination: that is the commit decision's job
    os.close(dst_w)
    feeder.join()
    drainer.join()
    os.close(src_r)
    os.close(dst_r)
    return relay, stats, bytes(got)


@pytest.mark.parametrize(("size", "piece"), [(0, 1), (10, 3), (CHUNK * 3 + 17, 7000), (CHUNK, CHUNK)])
def test_relay_copies_hashes_and_counts(size: int, piece: int) -> None:
    data = os.urandom(size)
    seen: list[int] = []
    _, stats, got = _through(lambda src, dst: Relay(src, dst, seen.append), data, piece)
    assert got == data
    assert stats.size == size and stats.sha256 == hashlib.sha256(data).hexdigest()
    assert stats.tail == data[-4096:]
    assert seen[-1] == size


def test_relay_reports_a_reader_that_went_away() -> None:
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    os.close(dst_r)
    os.write(src_w, b"x" * 1000)
    os.close(src_w)
    relay = Relay(src_r, dst_w)
    with pytest.raises(UploadFailed, match="stopped reading"):
        relay.run()
    os.close(src_r)
    os.close(dst_w)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_relay_compresses_on_the_way_and_hashes_the_stored_bytes(kind: str) -> None:
    from dbstash.parts.compression import parse_compress

    _, compression = parse_compress(kind)
    assert compression is not None
    data = b"".join(b"INSERT INTO t VALUES (%d, 'row');\n" % i for i in range(200_000)) + b"COMMIT;\n"
    _, stats, got = _through(lambda src, dst: Relay(src, dst, None, compression.compressor()), data, 65536)
    assert stats.dump_size == len(data)
    assert stats.size == len(got) < len(data) // 5
    assert stats.sha256 == hashlib.sha256(got).hexdigest()
    assert stats.tail.endswith(b"COMMIT;\n")  # the engine checks the dump's own tail, not the compressed one
    d = compression.decompressor()
    assert d.compress(got) + d.flush() == data
    truncated = compression.decompressor()
    truncated.compress(bytes(got[: len(got) // 2]))
    with pytest.raises(ValueError, match="truncated"):
        truncated.flush()


def test_a_source_that_is_a_file(tmp_path: Path) -> None:
    """A file as the source (directory and tar mode read one) is relayed like a pipe."""
    data = os.urandom(CHUNK + 123)
    (tmp_path / "dump").write_bytes(data)
    src = os.open(tmp_path / "dump", os.O_RDONLY)
    dst_r, dst_w = os.pipe()
    got = bytearray()
    drainer = threading.Thread(target=_drain, args=(dst_r, got))
    drainer.start()
    relay = Relay(src, dst_w)
    stats = relay.run()
    os.close(dst_w)
    drainer.join()
    os.close(src)
    os.close(dst_r)
    assert bytes(got) == data and stats.sha256 == hashlib.sha256(data).hexdigest() and stats.size == len(data)


def test_without_hashing_the_relay_still_counts_and_keeps_the_tail() -> None:
    data = os.urandom(3 * CHUNK + 5)
    _, stats, got = _through(lambda src, dst: Relay(src, dst, hashing=False), data, 100_000)
    assert got == data
    assert stats.size == len(data) and stats.tail == data[-4096:]
    assert stats.sha256 == hashlib.sha256().hexdigest()  # nothing hashed
