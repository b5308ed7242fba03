"""The job's remote: the rclone storage its settings describe, and the start-up checks that need rclone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from dbstash.errors import ConfigError, StorageError
from dbstash.logs import get_logger
from dbstash.redact import GLOBAL_REDACTOR
from dbstash.settings.config import Settings
from dbstash.storage.base import Storage, remote_name
from dbstash.storage.rclone_cli import DIRECT_TYPES, RcloneCliStorage
from dbstash.storage.rclone_rc import RcCredentialsRefused, RcloneRcStorage

log = get_logger("dbstash")


@contextlib.asynccontextmanager
async def job_storages(settings: Settings, storage: Storage | None) -> AsyncIterator[list[Storage]]:
    """Every destination of the job (the caller's *storage* alone, when given), released when the block ends."""
    if storage is not None:
        yield [storage]
        return
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(job_storage(settings.for_remote(r), None)) for r in settings.remotes]


@contextlib.asynccontextmanager
async def job_storage(settings: Settings, storage: Storage | None) -> AsyncIterator[Storage]:
    """The caller's storage as given, or this job's rclone storage, released when the block ends.

    RcloneCliStorage opens itself on first use, so an error there (no rclone) surfaces inside the
    caller's own error handling.
    """
    if storage is not None:
        yield storage
        return
    store: RcloneCliStorage | RcloneRcStorage
    if settings.rc is not None:
        store = RcloneRcStorage(settings.remote, settings.rc, redactor=GLOBAL_REDACTOR)
    else:
        store = RcloneCliStorage(
            settings.remote, settings.rclone, redactor=GLOBAL_REDACTOR, signed=settings.signing_key is not None
        )
    try:
        yield store
    finally:
        store.close()


async def preflight(
    settings: Settings,
    *,
    remote_variable: str = "remote",
    rc_variable: str = "rc",
    rc_user_variable: str = "rc",
    commit_variable: str = "rclone.commit",
) -> None:
    """Start-up checks that need rclone or the network, so bad input fails before anything is dumped.

    With the CLI transport: each remote that *settings* name is defined in rclone's config. With the
    rc transport: rcd answers and takes the credentials. The ``*_variable`` arguments are the names
    errors give the settings at fault: the library's parameters by default, the environment
    variables on the env path (``RCLONE_REMOTE``, ``RCLONE_RC_URL``, ``RCLONE_RC_USER``,
    ``RCLONE_COMMIT``).

    Raises:
        ConfigError: the remote is not defined (names *remote_variable*), rcd refused the
            credentials (*rc_user_variable*) or the URL is not an rcd (*rc_variable*).
        StorageError: rcd cannot be reached.
        ToolNotFound: rclone is not installed.
    """
    for remote in settings.remotes:  # every destination, before anything is dumped
        try:
            await _preflight(settings.for_remote(remote), remote_variable)
        except RcCredentialsRefused as exc:
            raise ConfigError(rc_user_variable, exc.expected, exc.value) from None
        except StorageError as exc:
            if settings.rc is None:
                raise
            raise StorageError(f"{exc.summary} ({rc_variable})", stderr_tail=exc.stderr_tail) from None
        except ConfigError as exc:
            named = {"rc": rc_variable, "rclone.commit": commit_variable}.get(exc.variable)
            if named is None:
                raise
            raise ConfigError(named, exc.expected, exc.value) from None


async def _preflight(settings: Settings, remote_variable: str) -> None:
    async with job_storage(settings, None) as store:
        if isinstance(store, RcloneRcStorage):
            await store.open()
            log.info("using the rclone daemon at %s (rclone %s)", store.options.display_url(), store.version)
            return
        assert isinstance(store, RcloneCliStorage)
        kind = store.backend_type()
        if settings.rclone.commit == "direct" and kind not in DIRECT_TYPES and kind != "unknown":
            raise ConfigError(
                "rclone.commit",
                f"auto or rename for a {kind} remote (it shows an upload under its name while it is written: "
                "direct is for object stores)",
                "direct",
            )
        log.debug("the remote is a %s backend: %s commit", kind, "direct" if store.commits_directly() else "rename")
        name = remote_name(settings.remote)
        if name is None or store.defines(name):  # found in the config without starting rclone
            return
        defined = await store.remotes()
        if name not in defined:
            raise ConfigError(
                remote_variable,
                f"a remote defined in the rclone config (no remote called {name!r}; defined: "
                + (", ".join(defined) or "none")
                + "), or a local path",
                settings.remote,
            )
