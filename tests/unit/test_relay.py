from __future__ import annotations

import hashlib
import os
import threading

import pytest

from dbstash.errors import UploadFailed
from dbstash.pipeline import CHUNK, Relay


def _feed(fd: int, data: bytes, piece: int) -> None:
    for i in range(0, len(data), piece):
        os.write(fd, data[i : i + piece])
    os.close(fd)


def _drain(fd: int, out: bytearray) -> None:
    while chunk := os.read(fd, 1 << 16):
        out.extend(chunk)


@pytest.mark.parametrize(("size", "piece"), [(0, 1), (10, 3), (CHUNK * 3 + 17, 7000), (CHUNK, CHUNK)])
def test_relay_copies_hashes_and_counts(size: int, piece: int) -> None:
    data = os.urandom(size)
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    got = bytearray()
    seen: list[int] = []
    feeder = threading.Thread(target=_feed, args=(src_w, data, piece))
    drainer = threading.Thread(target=_drain, args=(dst_r, got))
    feeder.start()
    drainer.start()
    stats = Relay(src_r, dst_w, seen.append).run()
    # the relay never closes the destination: that is the commit decision's job
    os.fstat(dst_w)
    os.close(dst_w)
    feeder.join()
    drainer.join()
    os.close(src_r)
    os.close(dst_r)
    assert bytes(got) == data
    assert stats.size == size and stats.sha256 == hashlib.sha256(data).hexdigest()
    assert stats.tail == data[-4096:]
    assert seen[-1] == size


def test_relay_reports_a_reader_that_went_away() -> None:
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    os.close(dst_r)
    os.write(src_w, b"x" * 1000)
    os.close(src_w)
    with pytest.raises(UploadFailed, match="stopped reading"):
        Relay(src_r, dst_w).run()
    os.close(src_r)
    os.close(dst_w)
