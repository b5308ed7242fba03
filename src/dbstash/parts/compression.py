"""In-stream compression: gzip or zstd applied by dbstash between the dump and the upload.

``BACKUP_COMPRESS`` keeps the spec's meaning for ``true`` (the dump tool's *native* compression) and
accepts ``gzip`` or ``zstd`` (optionally ``zstd:LEVEL``) to compress every engine's stream here,
appending ``.gz`` / ``.zst`` to the name. zstd runs multi-threaded in the C library (its workers do
not hold the GIL); gzip uses zlib, which releases the GIL on each call too.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal, Protocol

from dbstash.errors import ConfigError

Kind = Literal["gzip", "zstd"]
DEFAULT_LEVELS: dict[str, int] = {"gzip": 6, "zstd": 3}
LEVEL_RANGES: dict[str, tuple[int, int]] = {"gzip": (1, 9), "zstd": (1, 22)}
SUFFIXES: dict[str, str] = {"gzip": ".gz", "zstd": ".zst"}
EXPECTED = "true, false, gzip, zstd, or gzip:LEVEL / zstd:LEVEL (gzip 1-9, zstd 1-22)"


class Compressor(Protocol):
    """Incremental compressor: bytes in, compressed bytes out (possibly empty), then a final flush."""

    def compress(self, data: bytes | memoryview) -> bytes: ...

    def flush(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StreamCompression:
    """Compression done by dbstash on the stream (not by the dump tool)."""

    kind: Kind
    level: int

    @property
    def suffix(self) -> str:
        """``.gz`` or ``.zst``: appended to the engine's extension."""
        return SUFFIXES[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}:{self.level}"

    def compressor(self) -> Compressor:
        """A fresh compressor for one backup."""
        if self.kind == "gzip":
            return _Gzip(self.level)
        import zstandard  # noqa: PLC0415 - loaded when used: runs without zstd do not pay for it

        cctx = zstandard.ZstdCompressor(level=self.level, threads=-1, write_checksum=True)
        return _Zstd(cctx.compressobj())

    def decompressor(self) -> Compressor:
        """A fresh decompressor (``compress`` feeds compressed bytes, returns plain ones)."""
        if self.kind == "gzip":
            return _Gunzip()
        import zstandard  # noqa: PLC0415

        return _Unzstd(zstandard.ZstdDecompressor().decompressobj())


class _Gzip:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip container

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Gunzip:
    def __init__(self) -> None:
        self._obj = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.decompress(data)

    def flush(self) -> bytes:
        out = self._obj.flush()
        if not self._obj.eof:
            raise ValueError("the gzip stream is truncated")
        return out


class _Zstd:
    def __init__(self, obj: object) -> None:
        self._obj = obj

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.compress(data)  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> bytes:
        return self._obj.flush()  # type: ignore[attr-defined, no-any-return]


class _Unzstd:
    def __init__(self, obj: object) -> None:
        self._obj = obj

    def compress(self, data: bytes | memoryview) -> bytes:
        return self._obj.decompress(bytes(data))  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> bytes:
        if not self._obj.eof:  # type: ignore[attr-defined]
            raise ValueError("the zstd stream is truncated")
        return b""


def parse_compress(
    value: str | bool | None, variable: str = "BACKUP_COMPRESS"
) -> tuple[bool, StreamCompression | None]:
    """``BACKUP_COMPRESS`` -> (native compression?, in-stream compression or None).

    >>> parse_compress("true")
    (True, None)
    >>> parse_compress("zstd:19")
    (False, StreamCompression(kind='zstd', level=19))
    """
    if value is None or isinstance(value, bool):
        return bool(value), None
    text = value.strip().lower()
    if text in ("true", "1", "yes", "on", "native"):
        return True, None
    if text in ("false", "0", "no", "off", "", "none"):
        return False, None
    kind, colon, level_text = text.partition(":")
    if kind not in SUFFIXES or (colon and not level_text):
        raise ConfigError(variable, EXPECTED, value)
    if level_text:
        low, high = LEVEL_RANGES[kind]
        if not (level_text.isascii() and level_text.isdigit()) or not low <= int(level_text) <= high:
            raise ConfigError(variable, EXPECTED, value)
        level = int(level_text)
    else:
        level = DEFAULT_LEVELS[kind]
    return False, StreamCompression(kind, level)  # type: ignore[arg-type]  # kind checked against SUFFIXES


__all__ = ["Compressor", "StreamCompression", "parse_compress"]
