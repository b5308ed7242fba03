"""Pre- and post-backup hooks: shell commands run with ``sh -c``, with a timeout, output to the log."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Protocol

import anyio

from dbstash.errors import BackupFailed
from dbstash.logs import get_logger
from dbstash.notify.base import RunEvent
from dbstash.parts.process import child_base_env
from dbstash.redact import GLOBAL_REDACTOR

log = get_logger("dbstash.hooks")
DEFAULT_HOOK_TIMEOUT = 300.0


class HookFailed(BackupFailed):
    """``HOOK_PRE_BACKUP`` exited non-zero (or timed out): the backup was not started."""


class Hook(Protocol):
    """Anything with ``async run(event) -> exit status`` can be a hook (0 = success)."""

    async def run(self, event: RunEvent) -> int: ...


class ShellHook:
    """A shell command (``sh -c``) run with the process environment plus ``DBSTASH_*`` variables.

    The environment is scrubbed like every child's: no ``DB_*``, ``NOTIFY_*``, ``VERIFY_*`` or rclone
    variables (they hold passwords, tokens and keys); what a hook may know comes as ``DBSTASH_*``:
    ``DBSTASH_STATUS`` (start, success, failure), ``DBSTASH_FILE`` (remote path), ``DBSTASH_SIZE``,
    ``DBSTASH_SHA256``, ``DBSTASH_ENGINE``, ``DBSTASH_DATABASE``, ``DBSTASH_BACKUP_ID``, ``DBSTASH_ERROR``.
    """

    def __init__(self, command: str, *, name: str = "hook", timeout: float = DEFAULT_HOOK_TIMEOUT) -> None:
        self.command, self.name, self.timeout = command, name, timeout

    def environment(self, event: RunEvent) -> dict[str, str]:
        """The hook's environment."""
        extra = {
            "DBSTASH_STATUS": event.stage,
            "DBSTASH_FILE": event.remote_path or "",
            "DBSTASH_SIZE": "" if event.size is None else str(event.size),
            "DBSTASH_SHA256": event.sha256 or "",
            "DBSTASH_ENGINE": event.engine,
            "DBSTASH_DATABASE": event.database,
            "DBSTASH_BACKUP_ID": event.backup_id,
            "DBSTASH_ERROR": event.error or "",
        }
        return {**child_base_env(), **extra}

    async def run(self, event: RunEvent) -> int:
        log.info("running %s", self.name)
        proc = await anyio.open_process(
            ["sh", "-c", self.command],
            env=self.environment(event),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output = bytearray()

        async def drain() -> None:
            assert proc.stdout is not None
            async for chunk in proc.stdout:
                output.extend(chunk[: max(0, 65536 - len(output))])

        try:
            async with proc:  # closes the pipes and the transport whatever happens
                try:
                    with anyio.fail_after(self.timeout):
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(drain)
                            status = await proc.wait()
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
                    log.error("%s did not finish within %gs and was killed", self.name, self.timeout)
                    return 124
        finally:
            for line in output.decode(errors="replace").splitlines():
                if line.strip():
                    log.info("%s: %s", self.name, GLOBAL_REDACTOR(line))
        if status != 0:
            log.warning("%s exited with status %s", self.name, status)
        return status
