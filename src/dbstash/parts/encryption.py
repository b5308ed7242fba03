"""Public-key encryption of the stream with age: the backup host never holds a key that decrypts.

``BACKUP_ENCRYPT=age`` encrypts every backup to the recipients of ``AGE_RECIPIENTS`` /
``AGE_RECIPIENTS_FILE`` (age ``age1...`` keys and SSH ``ssh-ed25519`` / ``ssh-rsa`` public keys) with
the ``age`` command (Debian's ``age`` package, the reference implementation: no cryptography is
written here). The stream is ``dump -> [compression] -> age -> sha256 -> upload``:

- compression happens before encryption (ciphertext does not compress);
- the sha256 and size in the manifest are of the stored ciphertext, so ``verify`` checks a backup
  without any key; the manifest lists the recipients' fingerprints, never a key;
- ``.age`` is appended to the name.

Only a restore or a verify decrypts, with ``AGE_IDENTITY_FILE`` (a file only its owner may read):
its content goes to ``age -d`` as an in-memory file (``/dev/fd/N``), never in argv or a log. age
authenticates every 64 KiB chunk and the end of the stream: a flipped or missing byte makes it fail.

The recipients are handed to ``age -e`` the same way (``-R /dev/fd/N``): public, but long, and no
business of a process listing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from dbstash.engines.base import DumpCommand
from dbstash.errors import ConfigError, ToolNotFound
from dbstash.parts.process import ChildProcess
from dbstash.parts.transforms import ProcessTransform
from dbstash.redact import Redactor

SUFFIX = ".age"
#: Recipient forms age takes in a recipients file.
RECIPIENT_PREFIXES = ("age1", "ssh-ed25519 ", "ssh-rsa ")
RECIPIENTS_EXPECTED = (
    "age recipients (age1...) or SSH public keys (ssh-ed25519 / ssh-rsa), separated by commas or new lines"
)


def _recipient_lines(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace(",", "\n").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _age_checksum_problem(recipient: str) -> str | None:
    """Why *recipient* is not a well-formed ``age1`` key (its Bech32 checksum, BIP 173), or None."""
    hrp, _, data = recipient.lower().rpartition("1")
    if recipient != recipient.lower() or any(c not in _BECH32 for c in data) or len(data) < 6:
        return "an age1 key has only lower-case Bech32 characters"
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + [_BECH32.index(c) for c in data]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    return None if chk == 1 else "the age1 key's checksum does not match: a character is wrong or missing"


def _ssh_key_problem(recipient: str) -> str | None:
    """Why *recipient* is not a well-formed SSH public key line (its base64 blob names its type), or None."""
    kind, _, rest = recipient.partition(" ")
    blob = rest.split(" ", 1)[0]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return f"the {kind} key is not valid base64"
    n = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4 : 4 + n] != kind.encode():
        return f"the {kind} key's data does not hold an {kind} key"
    return None


def parse_recipients(text: str, variable: str) -> tuple[str, ...]:
    """The recipients in *text* (comma or newline separated, ``#`` comments); ConfigError naming *variable*."""
    found = _recipient_lines(text)
    if not found:
        raise ConfigError(variable, RECIPIENTS_EXPECTED, "(none)")
    for r in found:
        if "age-secret-key-" in r.lower():
            # a private key where a public one belongs: say so without echoing it
            raise ConfigError(
                variable, RECIPIENTS_EXPECTED + " (this is a private key: give its public key)", "(hidden)"
            )
        shown = r[:12] + ("..." if len(r) > 12 else "")
        if not r.startswith(RECIPIENT_PREFIXES) or (r.startswith("age1") and (len(r) != 62 or " " in r)):
            raise ConfigError(variable, RECIPIENTS_EXPECTED, shown)
        problem = _age_checksum_problem(r) if r.startswith("age1") else _ssh_key_problem(r)
        if problem:
            raise ConfigError(variable, f"{RECIPIENTS_EXPECTED} ({problem})", shown)
    return tuple(found)


def fingerprint(recipient: str) -> str:
    """A recipient's fingerprint: ``SHA256:...`` of the key blob for SSH keys (what ``ssh-keygen -l``
    prints), ``age:`` + the first 16 hex digits of the key's sha256 for age keys."""
    if recipient.startswith("ssh-"):
        parts = recipient.split()
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (IndexError, ValueError):
            blob = recipient.encode()
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return "age:" + hashlib.sha256(recipient.encode()).hexdigest()[:16]


def age_binary() -> str:
    """The ``age`` command; ToolNotFound names the package."""
    found = shutil.which("age")
    if not found:
        raise ToolNotFound("age not found (BACKUP_ENCRYPT=age needs it: apt install age, or a dbstash image)")
    return found


@dataclass(frozen=True, eq=True)
class AgeEncryption(ProcessTransform):
    """Encrypt to *recipients* (age or SSH public keys) with ``age``: a transform of the
    [`Pipeline`][dbstash.Pipeline] (the last one: compression goes before it).

    Examples:
        >>> import dbstash
        >>> enc = dbstash.AgeEncryption(("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",))
        >>> enc.suffix, enc.fingerprints()
        ('.age', ('age:cf7e568231315068',))
    """

    recipients: tuple[str, ...]

    def __post_init__(self) -> None:
        parse_recipients("\n".join(self.recipients), "recipients")

    @property
    def suffix(self) -> str:
        """``.age``: appended to the backup's name."""
        return SUFFIX

    def fingerprints(self) -> tuple[str, ...]:
        """What the manifest records about the recipients (never the keys)."""
        return tuple(fingerprint(r) for r in self.recipients)

    def command(self) -> DumpCommand:
        """``age -e -R /dev/fd/N`` (the recipients as an in-memory file)."""
        text = ("\n".join(self.recipients) + "\n").encode()
        return DumpCommand((age_binary(), "-e", "-R", "{secret:recipients}"), secret_files={"recipients": text})

    def __str__(self) -> str:
        return "age"


class AgeIdentity:
    """The private key(s) that decrypt: the content of an identity file, checked to be private.

    The content stays in memory; ``repr`` and ``str`` never show it.

    Examples:
        >>> import dbstash, os, subprocess, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "ops.key")
        >>> _ = subprocess.run(["age-keygen", "-o", path], capture_output=True, check=True)
        >>> os.chmod(path, 0o600)
        >>> dbstash.AgeIdentity.from_file(path)  # doctest: +ELLIPSIS
        AgeIdentity(source='.../ops.key')
        >>> os.chmod(path, 0o644)
        >>> dbstash.AgeIdentity.from_file(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        dbstash.errors.ConfigError: AGE_IDENTITY_FILE: ...(chmod 600 ...)
    """

    def __init__(self, content: bytes, source: str = "identity") -> None:
        self._content = content
        self.source = source

    @classmethod
    def from_file(cls, path: str, variable: str = "AGE_IDENTITY_FILE") -> AgeIdentity:
        """Read *path*: it must be a regular file that only its owner can read (0600 or 0400)."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(variable, "a readable age identity file", f"{path} ({exc.strerror})") from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(variable, "a regular file holding an age identity", path)
        if st.st_mode & 0o077:
            raise ConfigError(
                variable,
                f"an identity file only its owner can read (chmod 600 {path}; it is {oct(st.st_mode & 0o777)})",
                path,
            )
        try:
            with open(path, "rb") as fh:
                content = fh.read()
        except OSError as exc:
            raise ConfigError(variable, "a readable age identity file", f"{path} ({exc.strerror})") from None
        if b"AGE-SECRET-KEY-" not in content and b"PRIVATE KEY" not in content:
            raise ConfigError(variable, "an age identity file (AGE-SECRET-KEY-...) or an SSH private key", path)
        return cls(content, path)

    def command(self) -> DumpCommand:
        """``age -d -i /dev/fd/N``."""
        return DumpCommand((age_binary(), "-d", "-i", "{secret:identity}"), secret_files={"identity": self._content})

    def __repr__(self) -> str:
        return f"AgeIdentity(source={self.source!r})"


class DecryptError(ValueError):
    """age refused the stream: a wrong identity, or ciphertext that is not intact."""


class AgeDecryptor:
    """Decrypts a stream fed in pieces (the Compressor protocol of the restore's reader thread).

    ``age -d`` runs as a child; `compress()` writes ciphertext to it and returns the plaintext it
    has produced so far (a thread drains its output, so neither side can block the other);
    `flush()` ends the input, waits for the rest and raises ValueError unless age accepted the
    whole stream (a wrong identity, a flipped byte, a truncation).
    """

    def __init__(self, identity: AgeIdentity, redact: Redactor) -> None:
        self._proc: ChildProcess = identity.command().start(redact, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        popen = self._proc.popen
        assert popen.stdin is not None
        assert popen.stdout is not None
        self._in = popen.stdin
        self._out = popen.stdout
        self._lock = threading.Lock()
        self._ready: list[bytes] = []
        self._broken = False
        self._reader = threading.Thread(target=self._drain, name="dbstash-age-d", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        fd = self._out.fileno()
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                return
            with self._lock:
                self._ready.append(data)

    def _take(self) -> bytes:
        with self._lock:
            out, self._ready = b"".join(self._ready), []
        return out

    def compress(self, data: bytes | memoryview) -> bytes:
        view = memoryview(data)
        while view and not self._broken:
            try:
                view = view[os.write(self._in.fileno(), view) :]
            except BrokenPipeError:
                self._broken = True  # age stopped (bad key, corrupted input): flush() says why
        return self._take()

    def flush(self) -> bytes:
        try:
            self._in.close()
        except BrokenPipeError:
            self._broken = True
        self._reader.join()
        status = self._proc.popen.wait()
        rest = self._take()
        with contextlib.suppress(OSError):
            self._out.close()
        if status != 0:
            detail = self._proc.stderr.text().strip().splitlines()
            reason = next((line for line in detail if "error" in line), detail[0] if detail else "")
            raise DecryptError(f"age {self._proc.describe_exit(status)}: {reason.removeprefix('age: ')}")
        return rest

    def abort(self) -> None:
        """Stop age (the restore failed elsewhere) and reap it."""
        self._proc.send_signal(9)
        with contextlib.suppress(OSError):
            self._in.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.popen.wait(5)
        self._reader.join(5)
        with contextlib.suppress(OSError):
            self._out.close()


def describe(recipients: Sequence[str]) -> str:
    """How logs and dry runs name the encryption: the count and fingerprints, never the keys."""
    return f"age to {len(recipients)} recipient(s): " + ", ".join(fingerprint(r) for r in recipients)


__all__ = [
    "AgeDecryptor",
    "AgeEncryption",
    "AgeIdentity",
    "DecryptError",
    "describe",
    "fingerprint",
    "parse_recipients",
]
