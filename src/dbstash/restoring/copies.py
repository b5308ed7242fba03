"""The read side over several destinations: one listing merged from all of them, and the check of
every copy of a drilled backup. (Restoring from the first usable copy is in [`restore`][dbstash.restore].)"""

from __future__ import annotations

from dataclasses import replace

import anyio

from dbstash.errors import DbstashError, StorageError
from dbstash.jobs.naming import same_second_order
from dbstash.jobs.remote import job_storage
from dbstash.logs import get_logger
from dbstash.restoring.listing import BackupInfo, alist_backups, backup_infos, job_templates, with_manifest
from dbstash.restoring.restore import RestoreResult, check_belongs, prove_backup
from dbstash.settings.config import Settings

log = get_logger("dbstash.listing")


def proven(info: BackupInfo) -> bool:
    """Whether *info* is a copy its manifest proves: complete, the manifest's size, trusted (with keys)."""
    return info.complete and info.manifest is not None and not info.manifest_problem and info.untrusted is None


async def merged_listing(settings: Settings, *, manifests: bool) -> list[BackupInfo]:
    """Every destination's listing, one entry per backup (the first destination's where it has one)."""
    per: list[list[BackupInfo] | None] = [None] * len(settings.remotes)

    async def one(at: int, remote: str) -> None:
        try:
            per[at] = await alist_backups(settings.for_remote(remote), manifests=manifests)
        except StorageError as exc:
            log.warning("destination %s cannot be listed: %s", remote, exc)

    async with anyio.create_task_group() as tg:
        for at, remote in enumerate(settings.remotes):
            tg.start_soon(one, at, remote)
    if all(p is None for p in per):
        raise StorageError("no destination can be listed: " + ", ".join(settings.remotes))
    merged: dict[str, BackupInfo] = {}
    holders: dict[str, list[str]] = {}
    for remote, infos in zip(settings.remotes, per, strict=True):
        for info in infos or []:
            if info.complete and (proven(info) or not manifests):
                holders.setdefault(info.name, []).append(remote)
            first = merged.get(info.name)
            if first is None or (not first.complete and info.complete):
                merged[info.name] = info
    found = [replace(i, copies=tuple(holders.get(i.name, ()))) for i in merged.values()]
    return sorted(found, key=lambda b: (b.taken_at, same_second_order(b.name)), reverse=True)


async def check_copies(
    part: Settings, drilled: RestoreResult, allow_unsigned: bool
) -> tuple[tuple[str, str | None], ...]:
    """Every other destination's copy of the drilled backup, read whole and checked against its manifest
    (the manifest records a sha256, which few backends can hash on their side: every copy is read)."""

    async def check(remote: str) -> str | None:
        try:
            async with job_storage(part.for_remote(remote), None) as store:
                infos = backup_infos(await store.list(), job_templates(part), part.zone)
                info = next((i for i in infos if i.name == drilled.name and i.complete), None)
                if info is None:
                    return f"no copy of {drilled.name}"
                info = await with_manifest(store, info, part)
                check_belongs(part, info, allow_unsigned=allow_unsigned)
                if info.manifest is None or info.manifest.sha256 != drilled.sha256:
                    return f"its manifest does not match the drilled copy's ({info.manifest_problem or 'sha256'})"
                await prove_backup(store, info)
        except DbstashError as exc:
            return str(exc)
        return None

    found: list[tuple[str, str | None]] = []
    for remote in part.remotes:
        if remote != drilled.remote:
            problem = await check(remote)
            if problem is not None:
                log.error("verify: the copy of %s on %s is not good: %s", drilled.name, remote, problem)
            found.append((remote, problem))
    return tuple(found)
