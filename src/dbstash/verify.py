"""``verify``, the restore drill: restore into a scratch target, prove the checksum, count rows, drop the data."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import anyio

from dbstash.config import Settings
from dbstash.errors import ChecksumMismatch, ConfigError
from dbstash.logs import get_logger
from dbstash.restore import RestoreResult, arestore, target_for
from dbstash.storage.base import Storage

log = get_logger("dbstash.verify")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The restore drill's outcome: the restore, then what the scratch target held."""

    restore: RestoreResult
    counts: dict[str, int] = field(default_factory=dict)
    cleaned: bool = True

    def to_dict(self) -> dict[str, object]:
        return {**self.restore.to_dict(), "counts": self.counts, "cleaned": self.cleaned}


# -- listing ---------------------------------------------------------------------------------------
# -- verify ----------------------------------------------------------------------------------------
async def averify(
    settings: Settings, backup: str = "latest", *, target: str | None = None, storage: Storage | None = None
) -> VerifyResult:
    """The restore drill: restore into an empty scratch *target*, check the checksum, count rows, drop the data.

    *target* defaults to ``VERIFY_TARGET_URI``; for SQLite and Redis a temp file is used when none is given.
    Succeeds only when the restore succeeded and the checksum matched the manifest.
    """
    engine = settings.engine()
    target = target or settings.verify_target
    scratch_dir = None
    if target is None:
        if not engine.restores_to_file:
            raise ConfigError("VERIFY_TARGET_URI", f"a scratch {engine.key} database URI to restore into (--target)")
        scratch_dir = tempfile.mkdtemp(prefix="dbstash-verify-")
        target = os.path.join(scratch_dir, "scratch" + (".rdb" if engine.key == "redis" else ".db"))
    _, conn = target_for(settings, target)
    try:
        result = await arestore(settings, backup, target=target, storage=storage)
        if not result.checksum_verified:
            raise ChecksumMismatch(f"{result.name} has no manifest: its checksum cannot be verified")
        counts = await engine.table_counts(conn)
        log.info("verify: restored %s, checksum matched", result.name, extra={"counts": counts})
        return VerifyResult(result, counts)
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await engine.clear(conn)
            except Exception as exc:
                log.error("verify: could not drop the scratch data in %s: %s", conn.display_uri(), exc)
        if scratch_dir is not None:
            import shutil  # noqa: PLC0415

            shutil.rmtree(scratch_dir, ignore_errors=True)


def verify(settings: Settings, backup: str = "latest", *, target: str | None = None) -> VerifyResult:
    """The restore drill (blocking). See :func:`averify`."""
    return anyio.run(lambda: averify(settings, backup, target=target))


__all__ = ["VerifyResult", "averify", "verify"]
