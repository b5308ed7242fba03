"""Manifests: a small JSON sidecar written after each commit, so every backup can be checked later.

``NAME.dbstash-manifest.json`` holds the sha256 and size of exactly the stored bytes, what made
them (engine, tool and dbstash versions), how (mode, compression, encryption) and when. It is written only
after the backup was committed; retention removes a backup and its manifest together; listing
pairs them; restore and verify check the checksum against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

MANIFEST_SUFFIX = ".dbstash-manifest.json"
MANIFEST_VERSION = 1


def manifest_name(backup_name: str) -> str:
    """The manifest's name for *backup_name*."""
    return backup_name + MANIFEST_SUFFIX


#: ``<manifest name>.sig``: the manifest's signature, when the job signs (see `dbstash.jobs.signing`)
SIGNATURE_SUFFIX = ".sig"


def signature_name(manifest: str) -> str:
    """Where the signature of the manifest *manifest* is stored."""
    return manifest + SIGNATURE_SUFFIX


def is_manifest(name: str) -> bool:
    """Whether *name* is a manifest."""
    return name.endswith(MANIFEST_SUFFIX)


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one committed backup is (see the module docstring)."""

    name: str
    size: int
    sha256: str
    engine: str
    database: str
    mode: str
    compression: str | None
    native_compression: bool
    tool_version: str | None
    dbstash_version: str
    started_at: str
    finished_at: str
    dump_size: int | None = None
    backup_id: str | None = None
    #: directory mode: relative path -> [size, sha256] of every file (``sha256`` then digests this listing)
    files: dict[str, list[object]] | None = None
    #: ``{"kind": "age", "recipients": [fingerprints]}`` when the stored bytes are encrypted (never a key)
    encryption: dict[str, object] | None = None
    #: the job's name series: its name template with ``{db}`` and ``{engine}`` filled in (the job's identity)
    series: str | None = None
    #: the fingerprint (``SHA256:...``) of the key that signed this manifest (``<manifest>.sig``), if any
    signed_by: str | None = None
    version: int = MANIFEST_VERSION

    def to_json(self) -> bytes:
        """The manifest as stored (UTF-8 JSON, sorted keys)."""
        return (json.dumps(asdict(self), sort_keys=True, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a stored manifest; raises ValueError if it is not one."""
        try:
            raw: dict[str, Any] = json.loads(data)
            known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
            manifest = cls(**known)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a dbstash manifest: {exc}") from None
        if not isinstance(manifest.size, int) or len(manifest.sha256) != 64:
            raise ValueError("not a dbstash manifest: size or sha256 malformed")
        return manifest
