"""The option types of the transports settings build, and the defaults settings and parts share.

A leaf: `dbstash.settings` reads the environment into these, the storage transports take them
([`RcloneOptions`][dbstash.RcloneOptions] by [`RcloneCliStorage`][dbstash.RcloneCliStorage],
[`RcOptions`][dbstash.RcOptions] by
[`RcloneRcStorage`][dbstash.RcloneRcStorage]); neither side imports the other for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Metadata calls (list, stat, move, delete) must finish within this many seconds.
DEFAULT_OP_TIMEOUT = 60.0
#: Flags dbstash gives every rclone call, before ``RCLONE_EXTRA_ARGS`` (whose flags win: rclone takes
#: the last). rclone's own defaults (1 min to connect, 5 min of silence per attempt, 10 low-level
#: retries, each multiplied by the S3 SDK's attempts) let a dead remote hang a run for 10 minutes;
#: these make each attempt short, and dbstash's own bounds (the stall watchdog, DEFAULT_OP_TIMEOUT,
#: DEFAULT_COMMIT_TIMEOUT) end the run within a minute whatever rclone does.
DEFAULT_RCLONE_ARGS = ("--contimeout", "10s", "--timeout", "15s", "--low-level-retries", "3")
#: After end of input, rclone gets this long to finish the upload before it is stopped: what it still
#: holds is at most its upload buffers (S3: 4 x 5 MiB by default), so a live remote needs seconds.
DEFAULT_COMMIT_TIMEOUT = 45.0
#: ``RCLONE_COMMIT``: how uploads are committed (see the module docstring).
COMMIT_MODES = ("auto", "direct", "rename")
#: ``BACKUP_STALL_TIMEOUT``'s default: the pipeline's own (``dbstash.parts.relay``); a test keeps them equal.
DEFAULT_STALL_TIMEOUT = 45.0


@dataclass(frozen=True, slots=True)
class RcloneOptions:
    """How to run rclone.

    Attributes:
        binary: the rclone executable (default: ``rclone`` on PATH, e.g. from ``dbstash[rclone]``).
        config_text: rclone.conf content (from the spec's base64 ``RCLONE_CONFIG``). It reaches rclone
            through an in-memory file (memfd), never the disk and never argv.
        config_file: path of an rclone.conf (``RCLONE_CONFIG_FILE``).
        extra_args: flags added to every rclone call (``RCLONE_EXTRA_ARGS``), after *default_args*.
        default_args: dbstash's timeouts for every call (`DEFAULT_RCLONE_ARGS`); flags of the same
            name in *extra_args* win.
        env: extra environment for rclone, e.g. ``RCLONE_CONFIG_MYS3_TYPE=s3`` style remotes.
        op_timeout: seconds allowed for each list/stat/move/delete call.
    """

    binary: str = "rclone"
    config_text: str | None = field(default=None, repr=False)
    config_file: str | None = None
    extra_args: tuple[str, ...] = ()
    default_args: tuple[str, ...] = DEFAULT_RCLONE_ARGS
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    op_timeout: float = DEFAULT_OP_TIMEOUT
    commit_timeout: float = DEFAULT_COMMIT_TIMEOUT
    #: ``RCLONE_COMMIT``: ``auto`` (by the backend's type), ``direct`` or ``rename``
    commit: str = "auto"


@dataclass(frozen=True, slots=True)
class RcOptions:
    """Where the rclone daemon is and how to log in (``RCLONE_RC_URL``, ``RCLONE_RC_USER``, ``RCLONE_RC_PASS``).

    Attributes:
        url: base URL of ``rclone rcd`` (``http://127.0.0.1:5572``).
        user / password: its ``--rc-user`` / ``--rc-pass`` (basic auth).
        op_timeout: seconds for each metadata call (list, stat, move, delete).
        commit_timeout: seconds rcd gets, after the last byte, to finish storing the upload.
        connect_timeout: seconds to establish each connection.
    """

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    op_timeout: float = 60.0
    commit_timeout: float = 45.0
    connect_timeout: float = 10.0

    def display_url(self) -> str:
        """The URL without credentials."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


__all__ = [
    "COMMIT_MODES",
    "DEFAULT_COMMIT_TIMEOUT",
    "DEFAULT_OP_TIMEOUT",
    "DEFAULT_RCLONE_ARGS",
    "DEFAULT_STALL_TIMEOUT",
    "RcOptions",
    "RcloneOptions",
]
