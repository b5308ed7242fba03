"""Signed manifests: OpenSSH ``SSHSIG`` signatures anyone can check with ``ssh-keygen -Y verify``.

A backup job with a signing key (``BACKUP_SIGNING_KEY_FILE``, an ed25519 key made by
``ssh-keygen -t ed25519``) stores beside every manifest ``<manifest name>.sig``: a detached signature
of the manifest's exact bytes in OpenSSH's ``SSHSIG`` format with the namespace ``dbstash``. The
manifest holds what a restore relies on (object name, sha256, size, engine, database, the job's name
series, start time, run id, compression, encryption recipients, the signing key's fingerprint), so
one signature covers them all. Check one by hand, without dbstash::

    echo "dbstash $(cat backup-key.pub)" > allowed_signers
    ssh-keygen -Y verify -f allowed_signers -I dbstash -n dbstash -s X.dbstash-manifest.json.sig \\
        < X.dbstash-manifest.json

The restore side trusts the public keys of ``BACKUP_TRUSTED_KEYS`` (several at once: key rotation).
The ed25519 arithmetic is ``cryptography``'s; this module only writes and reads the container format
(``PROTOCOL.sshsig`` in OpenSSH's sources).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shlex
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbstash.errors import ConfigError

if TYPE_CHECKING:  # cryptography is imported when a key is used (~65 ms): a run without signing never loads it
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: The ``-n`` of ``ssh-keygen -Y sign|verify``: a signature made for dbstash is no git or file signature.
NAMESPACE = "dbstash"
_MAGIC = b"SSHSIG"
_VERSION = 1
_HASH = "sha512"
_KEY_TYPE = b"ssh-ed25519"
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
#: one option of an allowed_signers line: commas inside quotes belong to the value
_OPTION = re.compile(r'(?:[^,"]|"[^"]*")+')


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> bytes:
        return self.take(int.from_bytes(self.take(4), "big"))


def _key_blob(raw: bytes) -> bytes:
    return _string(_KEY_TYPE) + _string(raw)


def fingerprint(raw: bytes) -> str:
    """The key's fingerprint as ``ssh-keygen -l`` prints it (``SHA256:...``)."""
    digest = hashlib.sha256(_key_blob(raw)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _signed_data(message: bytes, namespace: str, hash_name: str) -> bytes:
    digest = hashlib.new(hash_name, message).digest()
    return _MAGIC + _string(namespace.encode()) + _string(b"") + _string(hash_name.encode()) + _string(digest)


class SigningKey:
    """An ed25519 private key that signs manifests; held in memory only, never shown.

    Examples:
        >>> key = SigningKey.from_file("/run/secrets/backup-key")  # doctest: +SKIP
        >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        >>> key = SigningKey(Ed25519PrivateKey.generate())  # or a fresh one, in code
        >>> key.fingerprint
        'SHA256:...'
        >>> key.sign(b'{"name": "x"}\\n').splitlines()[0]
        b'-----BEGIN SSH SIGNATURE-----'
    """

    __slots__ = ("_key", "fingerprint", "public_line")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the imports

        self._key = key
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        #: ``SHA256:...``, as ``ssh-keygen -l`` prints it; manifests name it (``signed_by``)
        self.fingerprint = fingerprint(raw)
        #: the public key as an ``authorized_keys`` / ``allowed_signers`` line would hold it
        self.public_line = (
            key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        )

    def __repr__(self) -> str:
        return f"SigningKey({self.fingerprint})"

    @classmethod
    def from_bytes(cls, data: bytes, variable: str = "signing_key") -> SigningKey:
        """Load an unencrypted OpenSSH ed25519 private key; [`ConfigError`][dbstash.ConfigError] names *variable*."""
        from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415 - see the imports
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

        expected = "an OpenSSH ed25519 private key without a passphrase (ssh-keygen -t ed25519 -N '')"
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except TypeError:
            raise ConfigError(variable, expected + ": this key has a passphrase", "<key>") from None
        except (ValueError, UnsupportedAlgorithm):
            raise ConfigError(variable, expected, "<not such a key>") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(variable, expected, f"<a {type(key).__name__.removesuffix('PrivateKey')} key>")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], variable: str = "signing_key") -> SigningKey:
        """Read *path* (mode 0600 or 0400: nobody but its owner may read it)."""
        try:
            mode = os.stat(path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    variable,
                    f"a private key file only its owner may read "
                    f"(chmod 600 {os.fspath(path)}; it is {oct(mode & 0o777)})",
                    os.fspath(path),
                )
            with open(path, "rb") as f:
                data = f.read(64 << 10)
        except OSError as exc:
            raise ConfigError(variable, f"a readable private key file ({exc.strerror})", os.fspath(path)) from None
        return cls.from_bytes(data, variable)

    def sign(self, message: bytes) -> bytes:
        """The armored ``SSHSIG`` signature of *message* (namespace ``dbstash``), as ``ssh-keygen -Y sign``
        writes it."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - see the imports

        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        signature = self._key.sign(_signed_data(message, NAMESPACE, _HASH))
        blob = (
            _MAGIC
            + _VERSION.to_bytes(4, "big")
            + _string(_key_blob(raw))
            + _string(NAMESPACE.encode())
            + _string(b"")
            + _string(_HASH.encode())
            + _string(_string(_KEY_TYPE) + _string(signature))
        )
        text = base64.b64encode(blob).decode()
        lines = [text[i : i + 70] for i in range(0, len(text), 70)]
        return ("\n".join([_BEGIN, *lines, _END]) + "\n").encode()


class Untrusted(Exception):
    """A signature that does not make a manifest trusted; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """The public keys whose signatures restore, verify, list and retention accept (several: rotation).

    Parsed from OpenSSH public key lines (``ssh-ed25519 AAAA... comment``) or an ``allowed_signers``
    file (``principal[,...] [namespaces="dbstash"] ssh-ed25519 AAAA...``); ``#`` starts a comment.
    A line whose ``namespaces=`` leaves out ``dbstash`` trusts nothing here, as for ``ssh-keygen``.

    Examples:
        >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        >>> key = SigningKey(Ed25519PrivateKey.generate())
        >>> trusted = TrustedKeys.parse(f'ops@example.com namespaces="dbstash" {key.public_line}')
        >>> manifest = b'{"name": "app-2026-12-03-020000.sql"}\\n'
        >>> trusted.check(manifest, key.sign(manifest)) == key.fingerprint
        True
        >>> trusted.check(b"{}", key.sign(manifest))
        Traceback (most recent call last):
        ...
        dbstash.jobs.signing.Untrusted: the signature by SHA256:... is not of this manifest (changed after signing?)
    """

    #: fingerprint -> raw 32-byte public key
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, text: str, variable: str = "trusted_keys") -> TrustedKeys:
        """Parse *text*; [`ConfigError`][dbstash.ConfigError] names *variable* and the line that is not a key."""
        expected = "OpenSSH ed25519 public keys, one a line (ssh-ed25519 AAAA...), or an allowed_signers file"
        keys: dict[str, bytes] = {}
        for number, raw_line in enumerate(text.splitlines(), 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                words = shlex.split(line, comments=False, posix=False)  # options keep their quotes
            except ValueError:
                raise ConfigError(variable, f"{expected} (line {number}: unbalanced quotes)", line[:20]) from None
            types = [i for i, w in enumerate(words) if w.startswith(("ssh-", "ecdsa-", "sk-"))]
            if not types or types[0] + 1 >= len(words):
                raise ConfigError(variable, f"{expected} (line {number} holds no public key)", line[:20])
            at = types[0]
            if words[at] != _KEY_TYPE.decode():
                raise ConfigError(variable, f"{expected} (line {number} is a {words[at]} key)", line[:20])
            options = words[1:at] if at > 1 else []
            namespaces = None
            for option in (o for opts in options for o in _OPTION.findall(opts)):
                name, _, value = option.partition("=")
                if name.lower() == "namespaces":
                    namespaces = value.strip('"').split(",")
                elif name.lower() in ("cert-authority", "valid-after", "valid-before"):
                    raise ConfigError(variable, f"{expected} (line {number}: {name} is not supported)", line[:20])
            raw = _parse_public(words[at + 1])
            if raw is None:
                problem = f"line {number}: the key's base64 is not an ed25519 key"
                raise ConfigError(variable, f"{expected} ({problem})", line[:20])
            if namespaces is not None and NAMESPACE not in namespaces:
                continue
            keys[fingerprint(raw)] = raw
        if not keys:
            raise ConfigError(variable, expected + " (none found)", text[:20])
        return cls(keys)

    def check(self, message: bytes, armored: bytes) -> str:
        """The fingerprint of the trusted key whose signature *armored* is of *message*;
        `Untrusted` says which check failed otherwise."""
        blob = _dearmor(armored)
        r = _Reader(blob)
        try:
            if r.take(6) != _MAGIC or int.from_bytes(r.take(4), "big") != _VERSION:
                raise Untrusted("not an SSHSIG signature")
            key = _Reader(r.string())
            namespace, _reserved, hash_name, sig = r.string(), r.string(), r.string(), r.string()
            key_type, raw = key.string(), key.string()
            s = _Reader(sig)
            sig_type, sig_bytes = s.string(), s.string()
        except ValueError:
            raise Untrusted("a malformed signature") from None
        if key_type != _KEY_TYPE or sig_type != _KEY_TYPE or len(raw) != 32:
            raise Untrusted(f"signed with a {key_type.decode(errors='replace')} key, not ed25519")
        who = fingerprint(raw)
        if namespace != NAMESPACE.encode():
            raise Untrusted(f"a signature for namespace {namespace.decode(errors='replace')!r}, not {NAMESPACE!r}")
        if hash_name not in (b"sha256", b"sha512"):
            raise Untrusted("an unknown hash algorithm")
        if who not in self.keys:
            raise Untrusted(f"signed by {who}, which is not a trusted key")
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - see the imports
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(
                sig_bytes, _signed_data(message, NAMESPACE, hash_name.decode())
            )
        except InvalidSignature:
            raise Untrusted(f"the signature by {who} is not of this manifest (changed after signing?)") from None
        return who


def _parse_public(text: str) -> bytes | None:
    try:
        r = _Reader(base64.b64decode(text, validate=True))
        if r.string() != _KEY_TYPE:
            return None
        raw = r.string()
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 32 else None


def _dearmor(armored: bytes) -> bytes:
    text = armored.decode(errors="replace").strip()
    if not text.startswith(_BEGIN) or not text.endswith(_END):
        raise Untrusted("not an armored SSH signature")
    body = "".join(text[len(_BEGIN) : -len(_END)].split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise Untrusted("a malformed signature") from None


def trusted_keys_from(text: str | None, path: str | os.PathLike[str] | None, variable: str) -> TrustedKeys | None:
    """``BACKUP_TRUSTED_KEYS`` (*text*) and ``BACKUP_TRUSTED_KEYS_FILE`` (*path*) together, or None if neither."""
    if text is None and path is None:
        return None
    parts = [text] if text is not None else []
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                parts.append(f.read(1 << 20))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            expected = f"a readable file of public keys ({reason})"
            raise ConfigError(variable + "_FILE", expected, os.fspath(path)) from None
    return TrustedKeys.parse("\n".join(parts), variable if path is None else f"{variable} / {variable}_FILE")
