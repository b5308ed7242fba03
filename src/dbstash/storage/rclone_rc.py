"""Storage over the rclone remote-control HTTP API (``rclone rcd``): the second transport.
(Over 400 lines on purpose: one transport, its streaming multipart upload and every rc call, in one module.)

For users who already run an rclone daemon (a sidecar container, a shared rclone): dbstash sends
HTTP requests instead of starting rclone for each step. The daemon's own config defines the remotes.

Uploads stream through ``operations/uploadfile`` as a chunked multipart body built here, read from
a pipe the pipeline relays into: never buffered whole. The commit protocol is the CLI transport's:
the body goes to ``NAME.<id>.dbstash-partial``; the closing multipart boundary is sent only after the
dump exited 0 (on any failure the request is torn down without it, and rcd discards the partial on
local and S3); then ``operations/stat`` confirms the size and ``operations/movefile`` gives the final
name. Idempotent calls (list, stat, delete, version) are retried on connection errors and 5xx; the
upload and the move never are.

rc error replies echo their input (``fs`` strings may hold credentials): dbstash keeps only the
``error`` text and runs it through the redactor.
"""

from __future__ import annotations

import os
import re
import select
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from dbstash.errors import ConfigError, StorageError, UploadFailed
from dbstash.jobs.naming import partial_name
from dbstash.logs import get_logger
from dbstash.parts.process import grow_pipe
from dbstash.parts.sink import RemoteEntry, SizeHint
from dbstash.redact import GLOBAL_REDACTOR, Redactor
from dbstash.settings.connstring import parse_connection_string
from dbstash.settings.options import RcOptions
from dbstash.storage.base import ABORT_DELETE_TIMEOUT, INTERRUPT_GRACE, Storage, Upload
from dbstash.storage.rclone_cli import entries_of

if TYPE_CHECKING:
    import requests

log = get_logger("dbstash.storage.rc")

CHUNK = 1 << 20
#: What ``core/command`` appends to a streamed command's output when the command succeeded.
_STREAM_OK_TRAILER = b"{}\n"
#: ``:backend,key=value,...:path`` connection strings: every value may be a credential.
_CONN_STRING = re.compile(r":[A-Za-z0-9_-]+,([^:]*):")


class RcError(StorageError):
    """rcd answered with an error (``status`` is its HTTP status).

    ``from_rcd`` is False when the reply was not rclone's JSON (some other web server answered).
    """

    def __init__(self, message: str, status: int, *, from_rcd: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.from_rcd = from_rcd


#: Statuses a proxy in front of rcd answers while rcd is down: an outage (exit 1), not a wrong URL.
_GATEWAY_STATUSES = (502, 503, 504)


def fs_secrets(remote: str) -> list[str]:
    """The values of a connection string's parameters (``:s3,secret_access_key=X:bucket`` -> ``X``, ...)."""
    parsed = parse_connection_string(remote)
    found = parsed.secrets() if parsed else []
    for m in _CONN_STRING.finditer(remote):
        for pair in m.group(1).split(","):
            key, sep, value = pair.partition("=")
            if sep and value and key not in ("provider", "env_auth", "region", "type"):
                found.append(value.strip("'\""))
    return found


class RcCredentialsRefused(ConfigError):
    """rcd answered 401/403: the user and password of [`RcOptions`][dbstash.RcOptions] are not its own."""


class RcloneRcStorage(Storage):
    """A remote folder reached through a running ``rclone rcd``.

    Examples:
        >>> opts = RcOptions("http://127.0.0.1:5572", user="dbstash", password="...")  # doctest: +SKIP
        >>> async with RcloneRcStorage("s3:bucket/pg", opts) as storage:  # doctest: +SKIP
        ...     print([e.name for e in await storage.list()])
    """

    def __init__(self, remote: str, options: RcOptions, *, redactor: Redactor | None = None) -> None:
        self.remote = remote
        self.options = options
        self._redact = redactor or GLOBAL_REDACTOR
        self._redact.add(options.password, *fs_secrets(remote))
        self._session: requests.Session | None = None
        self.version: str | None = None

    async def __aenter__(self) -> RcloneRcStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def open(self) -> None:
        """Check that rcd answers and accepts the credentials (``rc/noopauth``), read its version."""
        if self._session is not None:
            return
        import requests  # noqa: PLC0415 - loaded only by runs that use the rc transport

        session = requests.Session()
        if self.options.user is not None or self.options.password is not None:
            session.auth = (self.options.user or "", self.options.password or "")
        self._session = session
        try:
            await self._call("rc/noopauth", {}, retry=True)
        except RcError as exc:
            self.close()
            if exc.status in (401, 403):
                raise RcCredentialsRefused(
                    "rc",
                    f"the user and password of the rclone daemon at {self.options.display_url()} "
                    "(RcOptions user= and password=: its --rc-user / --rc-pass)",
                    self.options.user or "",
                ) from None
            if exc.status == 404 or (not exc.from_rcd and exc.status not in _GATEWAY_STATUSES):
                raise self._not_rcd() from None
            raise
        except StorageError:
            self.close()
            raise
        version = await self._call("core/version", {}, retry=True)
        if not isinstance(version.get("version"), str):
            self.close()
            raise self._not_rcd()
        self.version = str(version["version"])
        log.debug("rclone rcd %s at %s", self.version, self.options.display_url())

    def _not_rcd(self) -> ConfigError:
        return ConfigError(
            "rc",
            f"the base URL of an rclone rcd, e.g. http://127.0.0.1:5572 ({self.options.display_url()} "
            "answers, but not as rclone rcd)",
            self.options.url,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- HTTP ---------------------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return self.options.url.rstrip("/") + "/" + path

    def _error(self, path: str, reply: requests.Response) -> RcError:
        try:
            data = reply.json()
            from_rcd = isinstance(data, dict) and "error" in data
            text = str(data.get("error", "")) if isinstance(data, dict) else ""  # never "input": it echoes fs strings
        except ValueError:
            from_rcd, text = False, reply.text[:200]
        return RcError(
            self._redact(f"rclone rcd {path}: HTTP {reply.status_code}: {text}"), reply.status_code, from_rcd=from_rcd
        )

    def _post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        import requests  # noqa: PLC0415

        assert self._session is not None
        try:
            reply = self._session.post(
                self._url(path), json=body, timeout=(self.options.connect_timeout, timeout or self.options.op_timeout)
            )
        except requests.ConnectionError:
            raise StorageError(f"cannot reach the rclone daemon at {self.options.display_url()}") from None
        except requests.Timeout:
            raise StorageError(f"rclone rcd {path} did not answer in time") from None
        if reply.status_code != 200:
            raise self._error(path, reply)
        try:
            data = reply.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RcError(f"rclone rcd {path}: HTTP 200 with a reply that is not rclone's JSON", 200, from_rcd=False)
        return data

    async def _call(
        self, path: str, body: dict[str, Any], *, retry: bool = False, timeout: float | None = None
    ) -> dict[str, Any]:
        if self._session is None:
            await self.open()
        log.debug("rclone rc %s", path)
        if not retry:
            return await anyio.to_thread.run_sync(lambda: self._post(path, body, timeout), abandon_on_cancel=True)
        import tenacity  # noqa: PLC0415 - loaded with the rc transport only

        def transient(exc: BaseException) -> bool:
            if isinstance(exc, RcError):
                return (
                    (exc.from_rcd or exc.status in _GATEWAY_STATUSES)
                    and exc.status >= 500
                    and "not found" not in str(exc)
                )
            return isinstance(exc, StorageError)  # connection error or timeout

        attempt = tenacity.retry(
            retry=tenacity.retry_if_exception(transient),
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_exponential(multiplier=0.5, max=4),
            reraise=True,
        )(lambda: self._post(path, body, timeout))
        return await anyio.to_thread.run_sync(attempt, abandon_on_cancel=True)

    # -- Storage ------------------------------------------------------------------------------------
    async def begin(self, name: str, *, alternative: str | None = None, size_hint: SizeHint | None = None) -> RcUpload:
        if self._session is None:
            await self.open()
        partial = partial_name(name, os.urandom(4).hex())
        upload = RcUpload(self, name, partial, alternative)
        upload.start()
        return upload

    async def list(self) -> list[RemoteEntry]:
        try:
            data = await self._call(
                "operations/list", {"fs": self.remote, "remote": "", "opt": {"noMimeType": True}}, retry=True
            )
        except RcError as exc:
            if exc.status == 404:
                return []  # the folder does not exist yet: no backups
            raise
        return entries_of(data.get("list") or [])

    async def stat(self, name: str) -> RemoteEntry | None:
        data = await self._call("operations/stat", {"fs": self.remote, "remote": name}, retry=True)
        item = data.get("item")
        return entries_of([item])[0] if item else None

    async def delete(self, name: str, *, timeout: float | None = None) -> None:
        await self._remove("operations/deletefile", name, timeout)

    async def purge(self, name: str) -> None:
        await self._remove("operations/purge", name, None)

    async def _remove(self, path: str, name: str, timeout: float | None) -> None:
        """*path* on *name*; a name that is not there is removed already."""
        try:
            await self._call(path, {"fs": self.remote, "remote": name}, retry=True, timeout=timeout)
        except RcError as exc:
            if exc.status != 404:
                raise

    async def move(self, src: str, dst: str) -> None:
        """Server-side move inside the folder (never retried: a repeat could find its source gone)."""
        body = {"srcFs": self.remote, "srcRemote": src, "dstFs": self.remote, "dstRemote": dst}
        await self._call("operations/movefile", body)

    async def write(self, name: str, data: bytes) -> None:
        if self._session is None:
            await self.open()

        def post() -> None:
            import requests  # noqa: PLC0415

            assert self._session is not None
            try:
                reply = self._session.post(
                    self._url("operations/uploadfile"),
                    params={"fs": self.remote, "remote": ""},
                    files={"file0": (name, data, "application/octet-stream")},
                    timeout=(self.options.connect_timeout, self.options.op_timeout),
                )
            except requests.RequestException as exc:
                raise StorageError(f"writing {name} through the rclone daemon failed: {type(exc).__name__}") from None
            if reply.status_code != 200:
                raise self._error("operations/uploadfile", reply)

        await anyio.to_thread.run_sync(post, abandon_on_cancel=True)

    async def read(self, name: str) -> bytes:
        chunks: list[bytes] = []
        await self.read_stream(name, chunks.append)
        return b"".join(chunks)

    async def read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        """Stream *name* into *sink* through ``core/command cat`` (the rc API has no download call).

        rcd appends ``{}`` after the output when ``cat`` succeeded and an error object otherwise;
        the last bytes are held back until that trailer proves the stream complete.
        """
        if self._session is None:
            await self.open()
        await anyio.to_thread.run_sync(lambda: self._read_stream(name, sink), abandon_on_cancel=True)

    def _read_stream(self, name: str, sink: Callable[[bytes], None]) -> None:
        import requests  # noqa: PLC0415

        assert self._session is not None
        body = {"command": "cat", "arg": [self.path(name)], "returnType": "STREAM_ONLY_STDOUT"}
        try:
            with self._session.post(
                self._url("core/command"),
                json=body,
                stream=True,
                timeout=(self.options.connect_timeout, self.options.op_timeout),
            ) as reply:
                if reply.status_code != 200:
                    raise self._error("core/command cat", reply)
                held = b""
                for chunk in reply.iter_content(CHUNK):
                    data = held + chunk
                    held = data[-64:]
                    if len(data) > 64:
                        sink(data[:-64])
        except requests.RequestException as exc:
            raise StorageError(f"reading {name} from the rclone daemon failed: {type(exc).__name__}") from None
        if not held.endswith(_STREAM_OK_TRAILER):
            raise StorageError(self._redact(f"rclone cat {name} failed: {held[-60:].decode(errors='replace')}"))
        sink(held[: -len(_STREAM_OK_TRAILER)])


class _Aborted(Exception):
    """Raised inside the request body: the connection is torn down without the closing boundary."""


class RcUpload(Upload):
    """One ``operations/uploadfile`` request whose body streams from a pipe, in a worker thread."""

    def __init__(self, storage: RcloneRcStorage, final_name: str, partial: str, alternative: str | None) -> None:
        self._storage = self._catalog = storage
        self.final_name = final_name
        self.partial_name = partial
        self.alternative = alternative
        self._data_r, self._data_w = os.pipe()
        grow_pipe(self._data_w)
        self._cancel_r, self._cancel_w = os.pipe()
        self._boundary = "dbstash-" + os.urandom(12).hex()
        self._commit = False
        self._cancelled = False
        self._done = False
        self._finished = threading.Event()
        self._result: dict[str, Any] | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._send, name="rc-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def fileno(self) -> int:
        return self._data_w

    def failure_detail(self) -> str:
        return str(self._failure) if self._failure else ""

    # -- the request, in its own thread ---------------------------------------------------------------
    def _body(self) -> Iterator[bytes]:
        yield (
            f"--{self._boundary}\r\n"
            f'Content-Disposition: form-data; name="file0"; filename="{self.partial_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        while True:
            ready, _, _ = select.select([self._data_r, self._cancel_r], [], [])
            if self._cancel_r in ready:
                raise _Aborted
            chunk = os.read(self._data_r, CHUNK)
            if not chunk:
                break
            yield chunk
        if not self._commit:
            raise _Aborted  # end of input without a commit decision: never complete the body
        yield f"\r\n--{self._boundary}--\r\n".encode()

    def _send(self) -> None:
        import requests  # noqa: PLC0415

        storage = self._storage
        assert storage._session is not None
        try:
            reply = storage._session.post(
                storage._url("operations/uploadfile"),
                params={"fs": storage.remote, "remote": ""},
                data=self._body(),
                headers={"Content-Type": f"multipart/form-data; boundary={self._boundary}"},
                timeout=(storage.options.connect_timeout, storage.options.commit_timeout),
            )
            if reply.status_code != 200:
                self._failure = storage._error("operations/uploadfile", reply)
            else:
                self._result = reply.json()
        except _Aborted:
            self._failure = UploadFailed("upload aborted")
        except requests.RequestException as exc:
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, _Aborted):
                cause = cause.__cause__ or cause.__context__
            if cause is not None:
                self._failure = UploadFailed("upload aborted")
            else:
                self._failure = StorageError(
                    f"the upload to the rclone daemon at {storage.options.display_url()} failed: {type(exc).__name__}"
                )
        except BaseException as exc:
            self._failure = exc
        finally:
            self._finished.set()
            # nobody reads any more: the relay's next write fails with EPIPE instead of blocking
            os.close(self._data_r)

    # -- commit / abort ---------------------------------------------------------------------------
    async def _wait(self, timeout: float) -> bool:
        return await anyio.to_thread.run_sync(self._finished.wait, timeout, abandon_on_cancel=True)

    async def _finish(self) -> None:
        self._commit = True  # set before EOF: the body then ends with its closing boundary
        os.close(self._data_w)
        self._data_w = -1
        if not await self._wait(self._storage.options.commit_timeout):
            raise UploadFailed(
                f"the rclone daemon did not finish the upload within {self._storage.options.commit_timeout:.0f}s"
            )
        if self._failure is not None:
            raise UploadFailed(f"upload through the rclone daemon failed: {self._failure}")
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._data_w, self._cancel_r, self._cancel_w):
            if fd >= 0:
                os.close(fd)
        self._data_w = self._cancel_r = self._cancel_w = -1

    async def interrupt(self) -> None:
        if not self._cancelled and self._cancel_w >= 0:
            self._cancelled = True
            os.write(self._cancel_w, b"x")
        await self._wait(INTERRUPT_GRACE)

    async def abort(self, *, timeout: float | None = None) -> None:
        if self._done:
            return
        self._done = True
        await self.interrupt()
        self._close_fds()
        try:
            await self._storage.delete(self.partial_name, timeout=timeout or ABORT_DELETE_TIMEOUT)
        except Exception as exc:  # the daemon may be what failed: the partial name keeps a leftover harmless
            log.warning("could not remove partial upload %s: %s", self.partial_name, exc)
