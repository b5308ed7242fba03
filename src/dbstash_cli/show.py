"""What ``dbstash restore`` and ``dbstash verify`` print for a person: sentences, not Python values.

``--json`` prints the results' ``to_dict()`` instead, for scripts.
"""

from __future__ import annotations

from collections.abc import Iterator

import dbstash
from dbstash.units import human_bytes


def result_lines(result: object) -> Iterator[str]:
    """The lines for a restore or verify result (one database or a run of several)."""
    if isinstance(result, dbstash.RestoreResult):
        yield from _restored(result)
    elif isinstance(result, dbstash.VerifyResult):
        yield from _verified(result)
    elif isinstance(result, dbstash.RestoreRun):
        for r in result.results:
            yield from _restored(r, several=True)
        yield from _failures(result.failed)
        yield f"{len(result.results)} restored, {len(result.failed)} failed"
    elif isinstance(result, dbstash.VerifyRun):
        for v in result.results:
            yield from _verified(v)
        if result.globals_checked is not None:
            checked = (
                "its bytes match its manifest" if result.globals_checked else "its bytes do NOT match its manifest"
            )
            yield f"the roles/users backup (not restored in a drill): {checked}"
        yield from _failures(result.failed)
        yield f"{len(result.results)} verified, {len(result.failed)} failed"
    else:  # pragma: no cover - every command's result type is listed above
        yield str(result)


def _restored(r: dbstash.RestoreResult, *, several: bool = False) -> Iterator[str]:
    check = "sha256 verified" if r.checksum_verified else "sha256 NOT verified (no manifest)"
    what = f"{r.database}: " if several and r.database else ""
    yield f"restored {what}{r.name} into {r.target}: {human_bytes(r.size)} in {r.duration:.1f}s, {check}"
    if r.remote:
        yield f"  read from {r.remote}"
    if r.kept:
        yield f"  already on the target and kept as it was: {', '.join(r.kept)}"


def _verified(v: dbstash.VerifyResult) -> Iterator[str]:
    r = v.restore
    state = "ok" if v.ok else "FAILED"
    rows = sum(v.counts.values())
    yield (
        f"verify {state}: {r.name} restored into a scratch target, sha256 "
        + ("verified" if r.checksum_verified else "NOT verified")
        + f", {len(v.counts)} tables, {rows} rows"
    )
    for table, count in sorted(v.counts.items()):
        yield f"  {table:<40} {count:>12} rows"
    yield "  scratch data dropped" if v.cleaned else "  the scratch data could NOT be dropped: drop it by hand"
    for remote, problem in v.copies:
        yield f"  copy on {remote}: " + ("matches the manifest" if problem is None else f"NOT good: {problem}")


def _failures(failed: tuple[tuple[str, str], ...]) -> Iterator[str]:
    for database, error in failed:
        yield f"FAILED {database}: {error}"
