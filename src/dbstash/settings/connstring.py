"""rclone connection strings (``:s3,provider=AWS,secret_access_key=X:bucket/path``), kept out of argv.

rclone reads a remote's parameters from the remote path itself; on its command line they would be
readable by every user of the machine (``/proc/PID/cmdline``). dbstash parses the parameters off and
hands them to rclone as environment variables instead, which rclone reads for the same remote:
``RCLONE_<BACKEND>_<KEY>`` for an on-the-fly backend (``:s3,...:``), ``RCLONE_CONFIG_<NAME>_<KEY>`` for
a named remote with overrides (``myremote,...:``). The parsing follows rclone's: ``key=value`` pairs
separated by ``,``, a value holding ``,`` or ``:`` quoted with ``'`` or ``"`` (a doubled quote is a
quote), and a bare ``key`` meaning ``true``.

One difference: rclone ranks a connection string's parameters above its command-line flags, and
environment variables below them, so a ``--s3-...`` flag in ``RCLONE_EXTRA_ARGS`` now wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A remote's name (``myremote``) or an on-the-fly backend (``:s3``), then its parameters.
_NAME = re.compile(r"^(:?[A-Za-z0-9_][\w.\- ]*?),")
#: Parameters whose values are not secrets (kept readable in logs and errors).
_PLAIN_KEYS = frozenset({"provider", "env_auth", "region", "type", "endpoint"})


@dataclass(frozen=True, slots=True)
class ConnectionString:
    """A remote path whose parameters are parsed off: ``name`` (``:s3`` or ``myremote``), ``path``."""

    name: str
    params: tuple[tuple[str, str], ...]
    path: str

    @property
    def remote(self) -> str:
        """The remote path without its parameters (``:s3:bucket/path``)."""
        return f"{self.name}:{self.path}"

    def env(self) -> dict[str, str]:
        """The parameters as the environment variables rclone reads for this remote."""
        if self.name.startswith(":"):
            prefix = "RCLONE_" + _env_word(self.name[1:]) + "_"
        else:
            prefix = "RCLONE_CONFIG_" + _env_word(self.name) + "_"
        return {prefix + _env_word(key): value for key, value in self.params}

    def secrets(self) -> list[str]:
        """The values that may be credentials (all but provider, region, endpoint and the like)."""
        return [v for k, v in self.params if k.lower() not in _PLAIN_KEYS and v.lower() not in ("true", "false")]


def _env_word(word: str) -> str:
    return word.upper().replace("-", "_").replace(".", "_").replace(" ", "_")


def parse_connection_string(remote: str) -> ConnectionString | None:
    """*remote*'s parameters, or None when it has none (a plain ``remote:path`` or a local path) or
    they do not parse (rclone then reports the remote as it is)."""
    m = _NAME.match(remote)
    if m is None:
        return None
    i, n = m.end(), len(remote)
    params: list[tuple[str, str]] = []
    while True:
        j = i
        while j < n and remote[j] not in "=,:":
            j += 1
        key = remote[i:j]
        if j >= n or not key:
            return None
        if remote[j] == "=":
            j += 1
            if j < n and remote[j] in "'\"":
                quote, j, chars = remote[j], j + 1, []
                while True:
                    if j >= n:
                        return None  # an unterminated quote
                    if remote[j] == quote:
                        if j + 1 < n and remote[j + 1] == quote:
                            chars.append(quote)
                            j += 2
                            continue
                        j += 1
                        break
                    chars.append(remote[j])
                    j += 1
                value = "".join(chars)
            else:
                start = j
                while j < n and remote[j] not in ",:":
                    j += 1
                value = remote[start:j]
        else:
            value = "true"
        params.append((key, value))
        if j >= n or remote[j] not in ",:":
            return None
        if remote[j] == ":":
            return ConnectionString(m.group(1), tuple(params), remote[j + 1 :])
        i = j + 1
