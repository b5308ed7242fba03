"""Signed backups (issue 26): keys made by the real ``ssh-keygen``, every signature checked by
``ssh-keygen -Y verify`` too; round trips for every engine and mode against the suite's real servers;
and the attacks of someone who can write to the remote, each refused before any restore tool starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dbstash
from dbstash import ConfigError, RestoreRefused, Settings, SigningKey
from dbstash.jobs.manifest import Manifest, manifest_name, signature_name
from dbstash.jobs.signing import TrustedKeys, Untrusted
from tests.support.cases import EngineCase
from tests.support.servers import ArgvScan, PgServer
from tests.support.transports import Transport

pytestmark = pytest.mark.integration
DBSTASH = [sys.executable, "-m", "dbstash_cli"]


@dataclass(frozen=True)
class SshKey:
    private: Path  # mode 0600
    public: str  # the .pub line
    secret_line: str  # a line of the private key's body: must never leak


def make_key(directory: Path, name: str) -> SshKey:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    return SshKey(path, Path(f"{path}.pub").read_text().strip(), path.read_text().splitlines()[2])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    d = tmp_path_factory.mktemp("sshkeys")
    return {n: make_key(d, n) for n in ("backup", "rotated", "attacker")}


def ssh_keygen_verifies(folder: Path, key: SshKey) -> list[str]:
    """Every ``.sig`` under *folder* checked by OpenSSH itself; returns the manifests it accepted."""
    allowed = folder.parent / f"allowed_signers_{uuid.uuid4().hex[:6]}"
    allowed.write_text(f"backup@dbstash {key.public}\n")
    checked = []
    for sig in sorted(folder.rglob("*.sig")):
        manifest = sig.with_name(sig.name.removesuffix(".sig"))
        with manifest.open("rb") as stdin:
            done = subprocess.run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(allowed),
                    "-I",
                    "backup@dbstash",
                    "-n",
                    "dbstash",
                    "-s",
                    str(sig),
                ],
                stdin=stdin,
                capture_output=True,
                text=True,
                timeout=30,
            )
        assert done.returncode == 0, f"{sig.name}: {done.stdout}{done.stderr}"
        checked.append(manifest.name)
    return checked


def no_key_anywhere(folder: Path, key: SshKey) -> None:
    body = key.private.read_text()
    for f in folder.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert key.secret_line.encode() not in data and b"OPENSSH PRIVATE KEY" not in data, f
            assert body.encode() not in data


# -- the format ----------------------------------------------------------------------------------
def test_a_signature_of_ssh_keygen_is_accepted_and_ours_by_ssh_keygen(keys: dict[str, SshKey], tmp_path: Path) -> None:
    key = keys["backup"]
    message = tmp_path / "m.json"
    message.write_bytes(b'{"name": "x"}\n')
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key.private), "-n", "dbstash", str(message)], check=True
    )
    theirs = Path(f"{message}.sig").read_bytes()
    trusted = TrustedKeys.parse(key.public)
    assert trusted.check(message.read_bytes(), theirs) == SigningKey.from_file(key.private).fingerprint
    Path(f"{message}.sig").write_bytes(SigningKey.from_file(key.private).sign(message.read_bytes()))
    assert ssh_keygen_verifies(tmp_path, key) == ["m.json"]
    # a git signature (namespace "git") is no dbstash signature
    git = subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-f", str(key.private), "-n", "git"],
        input=message.read_bytes(),
        capture_output=True,
        check=True,
    ).stdout
    with pytest.raises(Untrusted, match="namespace 'git'"):
        trusted.check(message.read_bytes(), git)


def test_trusted_keys_parse_public_keys_and_allowed_signers(keys: dict[str, SshKey]) -> None:
    a, b = keys["backup"], keys["rotated"]
    text = f'# ops keys\n{a.public}\n\nops@example.com,backup@x namespaces="git,dbstash" {b.public}\n'
    assert len(TrustedKeys.parse(text).keys) == 2
    only_git = f'ops@example.com namespaces="git" {b.public}\n{a.public}\n'
    assert list(TrustedKeys.parse(only_git).keys) == [SigningKey.from_file(a.private).fingerprint]
    for bad, why in (
        ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", "ssh-rsa key"),
        ("ssh-ed25519 not-base64!", "base64"),
        ("# only a comment", "none found"),
        (f"* cert-authority {a.public}", "cert-authority is not supported"),
    ):
        with pytest.raises(ConfigError, match=why):
            TrustedKeys.parse(bad, "BACKUP_TRUSTED_KEYS")


def test_the_signing_key_file_must_be_private_and_unencrypted(keys: dict[str, SshKey], tmp_path: Path) -> None:
    open_key = tmp_path / "open"
    shutil.copy(keys["backup"].private, open_key)
    open_key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"signing_key.*chmod 600"):
        SigningKey.from_file(open_key)
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(locked)], check=True)
    with pytest.raises(ConfigError, match="passphrase") as caught:
        SigningKey.from_file(locked)
    assert "pass phrase" not in str(caught.value)
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    with pytest.raises(ConfigError, match="ed25519"):
        SigningKey.from_file(rsa)


# -- round trips ---------------------------------------------------------------------------------
def test_signed_round_trip_every_engine(engine_case: EngineCase, keys: dict[str, SshKey], tmp_path: Path) -> None:
    """MySQL, MariaDB, Redis, MongoDB: signed, listed as trusted, restored only through the check."""
    remote = tmp_path / "remote"
    key = keys["backup"]
    settings = Settings.create(
        engine_case.uri(), remote=str(remote), signing_key=key.private, trusted_keys=[key.public]
    )
    before = engine_case.snapshot()
    with ArgvScan(key.secret_line) as scan:
        backup = dbstash.backup(settings=settings)
    assert scan.leaks == []
    manifest = Manifest.from_json((remote / manifest_name(backup.name)).read_bytes())
    assert manifest.signed_by == SigningKey.from_file(key.private).fingerprint and manifest.series
    assert ssh_keygen_verifies(remote, key) == [manifest_name(backup.name)]
    [info] = dbstash.list_backups(settings)
    assert info.signed and info.untrusted is None and info.signed_by == manifest.signed_by
    target = engine_case.fresh_target(str(tmp_path))
    result = dbstash.restore(settings, target=target)
    assert result.checksum_verified
    assert engine_case.target_snapshot(target) == before
    no_key_anywhere(remote, key)


@pytest.fixture
def pg_source(pg: PgServer) -> tuple[str, str]:
    """A database of its own with a table: (database, table)."""
    name, table = f"signed_{uuid.uuid4().hex[:8]}", f"t_{uuid.uuid4().hex[:6]}"
    pg.createdb(name)
    pg.psql(
        f"CREATE TABLE {table}(id int primary key, v text); "
        f"INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, 500) g",
        name,
    )
    return name, table


def rows(pg: PgServer, table: str, database: str) -> str:
    return pg.psql(f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t", database)


@pytest.mark.parametrize("mode", ["stream", "tar", "directory"])
def test_postgres_signed_round_trip_every_mode(
    pg: PgServer, pg_source: tuple[str, str], keys: dict[str, SshKey], tmp_path: Path, mode: str
) -> None:
    db, table = pg_source
    remote = tmp_path / "remote"
    key = keys["backup"]
    settings = Settings.create(
        pg.uri(database=db),
        remote=str(remote),
        mode=mode,
        temp_dir=str(tmp_path / "work"),
        signing_key=key.private,
        trusted_keys=key.public,
    )
    backup = dbstash.backup(settings=settings)
    assert ssh_keygen_verifies(remote, key) == [manifest_name(backup.name)]
    target = f"restored_{uuid.uuid4().hex[:6]}"
    pg.createdb(target)
    assert dbstash.restore(settings, target=pg.uri(database=target)).checksum_verified
    assert rows(pg, table, target) == rows(pg, table, db)
    no_key_anywhere(remote, key)


def test_multi_database_run_signs_every_database_and_the_globals(
    pg: PgServer, keys: dict[str, SshKey], tmp_path: Path
) -> None:
    key = keys["backup"]
    names = []
    for _ in range(2):
        name, table = f"multi_{uuid.uuid4().hex[:8]}", "t"
        pg.createdb(name)
        pg.psql(f"CREATE TABLE {table}(id int primary key); INSERT INTO {table} SELECT generate_series(1, 50)", name)
        names.append(name)
    remote = tmp_path / "remote"
    settings = Settings.create(
        pg.uri(), remote=str(remote), databases=names, signing_key=key.private, trusted_keys=key.public
    )
    run = dbstash.backup_many(settings=settings)
    assert run.ok
    signed = ssh_keygen_verifies(remote, key)
    assert len(signed) == 3 and any("_globals" in s for s in signed)
    infos = dbstash.list_backups(settings)
    assert len(infos) == 3 and all(i.untrusted is None and i.signed_by for i in infos)
    target = f"restored_{uuid.uuid4().hex[:6]}"
    pg.createdb(target)
    dbstash.restore(settings, database=names[0], target=pg.uri(database=target))
    assert pg.psql("SELECT count(*) FROM t", target) == "50"


def test_sqlite_age_signed_round_trip_and_verify(sqlite_db: Path, keys: dict[str, SshKey], tmp_path: Path) -> None:
    age_key = tmp_path / "age.txt"
    subprocess.run(["age-keygen", "-o", str(age_key)], check=True, capture_output=True)
    age_key.chmod(0o600)
    recipient = subprocess.run(["age-keygen", "-y", str(age_key)], check=True, capture_output=True, text=True).stdout
    key = keys["backup"]
    remote = tmp_path / "remote"
    settings = Settings.create(
        f"sqlite:///{sqlite_db}",
        remote=str(remote),
        encrypt_to=recipient.strip(),
        identity_file=age_key,
        signing_key=key.private,
        trusted_keys=key.public,
    )
    backup = dbstash.backup(settings=settings)
    assert backup.name.endswith(".age")
    manifest = Manifest.from_json((remote / manifest_name(backup.name)).read_bytes())
    assert manifest.encryption is not None and manifest.signed_by
    assert ssh_keygen_verifies(remote, key) == [manifest_name(backup.name)]
    checked = dbstash.verify(settings)
    assert checked.restore.checksum_verified and checked.counts.get("users") == 200


def test_key_rotation_keeps_older_backups_restorable(sqlite_db: Path, keys: dict[str, SshKey], tmp_path: Path) -> None:
    """Backups signed by the old key and by the new one; both trusted during the rotation; once the
    old key is dropped from the trusted keys its backups are untrusted and latest is the new key's."""
    old, new = keys["backup"], keys["rotated"]
    remote = tmp_path / "remote"
    uri = f"sqlite:///{sqlite_db}"
    first = dbstash.backup(settings=Settings.create(uri, remote=str(remote), signing_key=old.private))
    second = dbstash.backup(settings=Settings.create(uri, remote=str(remote), signing_key=new.private))
    both = Settings.create(uri, remote=str(remote), trusted_keys=[old.public, new.public])
    infos = {i.name: i for i in dbstash.list_backups(both)}
    assert infos[first.name].signed_by == SigningKey.from_file(old.private).fingerprint
    assert infos[second.name].signed_by == SigningKey.from_file(new.private).fingerprint
    dbstash.restore(both, first.name, target=str(tmp_path / "old.db"))
    only_new = Settings.create(uri, remote=str(remote), trusted_keys=new.public)
    infos = {i.name: i for i in dbstash.list_backups(only_new)}
    assert "which is not a trusted key" in str(infos[first.name].untrusted)
    with pytest.raises(RestoreRefused, match="not a trusted key"):
        dbstash.restore(only_new, first.name, target=str(tmp_path / "refused.db"))
    assert not (tmp_path / "refused.db").exists()


def test_signed_round_trip_into_s3_through_each_transport(
    sqlite_db: Path, keys: dict[str, SshKey], tmp_path: Path, transport: Transport
) -> None:
    """The rclone CLI and the rc daemon both store the signature with the manifest (S3, before the
    object appears); both read it back for the check; ssh-keygen accepts what the server holds."""
    key = keys["backup"]
    folder = f"signed-{uuid.uuid4().hex[:6]}"
    settings = Settings.create(
        f"sqlite:///{sqlite_db}",
        remote=transport.s3.remote(folder),
        signing_key=key.private,
        trusted_keys=key.public,
        **transport.kwargs(),
    )
    with ArgvScan(key.secret_line) as scan:
        backup = dbstash.backup(settings=settings)
    assert scan.leaks == []
    stored = Path(transport.s3.root) / transport.s3.bucket / folder
    assert ssh_keygen_verifies(stored, key) == [manifest_name(backup.name)]
    [info] = dbstash.list_backups(settings)
    assert info.untrusted is None and info.signed_by
    assert dbstash.restore(settings, target=str(tmp_path / "restored.db")).checksum_verified
    (stored / signature_name(manifest_name(backup.name))).unlink()  # behind the server's back:
    time.sleep(1.5)  # its directory cache (1 s) would still list it (then: "its signature cannot be read")
    with pytest.raises(RestoreRefused, match="unsigned"):
        dbstash.restore(settings, target=str(tmp_path / "refused.db"))
    assert not (tmp_path / "refused.db").exists()


# -- the attacks ---------------------------------------------------------------------------------
#: what a forged backup would run (the issue's was ``COPY ... TO PROGRAM``, which needs a superuser)
EVIL = b"\nCREATE TABLE public.pwned(id int);\n"


@dataclass
class Job:
    pg: PgServer
    settings: Settings
    remote: Path
    older: str  # a good backup
    newer: str  # a newer good backup
    table: str
    database: str

    def pwned(self, database: str) -> bool:
        return self.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'pwned'", database) != "0"

    def files(self, name: str) -> tuple[Path, Path, Path]:
        m = self.remote / manifest_name(name)
        return self.remote / name, m, self.remote / signature_name(manifest_name(name))

    def future_name(self) -> str:
        return self.settings.template().render(datetime.now(UTC) + timedelta(hours=1))

    def forge(self, content: bytes, name: str, manifest: Manifest) -> bytes:
        """Store *content* as *name* with a manifest recomputed for it (what a remote's writer can do)."""
        path, mpath, _ = self.files(name)
        path.write_bytes(content)
        text = replace(manifest, name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest()).to_json()
        mpath.write_bytes(text)
        return text


@pytest.fixture
def job(pg: PgServer, pg_source: tuple[str, str], keys: dict[str, SshKey], tmp_path: Path) -> Job:
    db, table = pg_source
    key = keys["backup"]
    remote = tmp_path / "remote"
    settings = Settings.create(
        pg.uri(database=db), remote=str(remote), signing_key=key.private, trusted_keys=key.public
    )
    older = dbstash.backup(settings=settings).name
    pg.psql(f"INSERT INTO {table} VALUES (1000, 'newer')", db)
    newer = dbstash.backup(settings=settings).name
    assert older != newer
    return Job(pg, settings, remote, older, newer, table, db)


def _evil(job: Job, name: str) -> bytes:
    return job.files(name)[0].read_bytes() + EVIL


def _refused_untouched(job: Job, name: str, match: str, tmp_name: str = "") -> None:
    """Restoring *name* is refused before a tool starts; the target stays empty; nothing ran."""
    target = f"target_{uuid.uuid4().hex[:6]}"
    job.pg.createdb(target)
    with ArgvScan() as scan, pytest.raises(RestoreRefused, match=match):
        dbstash.restore(job.settings, name, target=job.pg.uri(database=target))
    assert not scan.children & {"psql", "pg_restore"}, "no restore tool was started"
    assert job.pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", target) == "0"
    infos = {i.name: i for i in dbstash.list_backups(job.settings)}
    if name in infos:
        assert infos[name].untrusted is not None and infos[name].untrusted != ""
    # and latest is never the attacked object
    latest = f"latest_{uuid.uuid4().hex[:6]}"
    job.pg.createdb(latest)
    chosen = dbstash.restore(job.settings, target=job.pg.uri(database=latest))
    assert chosen.name != name and chosen.name in (job.older, job.newer)
    assert not job.pwned(latest)


def test_tampered_content_with_a_recomputed_manifest_is_refused(job: Job) -> None:
    _, mpath, _ = job.files(job.newer)
    manifest = Manifest.from_json(mpath.read_bytes())
    job.forge(_evil(job, job.newer), job.newer, manifest)
    _refused_untouched(job, job.newer, r"untrusted: the signature by SHA256:\S+ is not of this manifest")
    # the same attack on a job that trusts no keys is what the issue measured: restored, and the command ran
    naive = replace(job.settings, trusted_keys=None)
    target = f"naive_{uuid.uuid4().hex[:6]}"
    job.pg.createdb(target)
    assert dbstash.restore(naive, job.newer, target=job.pg.uri(database=target)).checksum_verified
    assert job.pwned(target), "without trusted keys the forged backup runs its SQL (the check above matters)"


def test_rollback_under_a_newer_name_is_refused(job: Job) -> None:
    name = job.future_name()
    for src, dst in zip(job.files(job.older), job.files(name), strict=True):
        shutil.copy(src, dst)
    _refused_untouched(job, name, r"untrusted: signed by SHA256:\S+ for another object: name")


def test_another_jobs_backup_planted_under_this_jobs_name_is_refused(
    job: Job, pg: PgServer, keys: dict[str, SshKey], tmp_path: Path
) -> None:
    other_db = f"other_{uuid.uuid4().hex[:6]}"
    pg.createdb(other_db)
    pg.psql("CREATE TABLE x(id int)", other_db)
    other = Settings.create(
        pg.uri(database=other_db), remote=str(tmp_path / "other"), signing_key=keys["backup"].private
    )
    theirs = dbstash.backup(settings=other).name
    name = job.future_name()
    for src, dst in zip(
        (
            tmp_path / "other" / theirs,
            tmp_path / "other" / manifest_name(theirs),
            tmp_path / "other" / signature_name(manifest_name(theirs)),
        ),
        job.files(name),
        strict=True,
    ):
        shutil.copy(src, dst)
    _refused_untouched(job, name, r"untrusted: signed by \S+ for another object: name .*database")


def test_a_manifest_resigned_with_an_untrusted_key_is_refused(job: Job, keys: dict[str, SshKey]) -> None:
    name = job.future_name()
    manifest = Manifest.from_json(job.files(job.newer)[1].read_bytes())
    text = job.forge(_evil(job, job.newer), name, manifest)
    job.files(name)[2].write_bytes(SigningKey.from_file(keys["attacker"].private).sign(text))
    _refused_untouched(job, name, r"untrusted: signed by SHA256:\S+, which is not a trusted key")


def test_the_signature_of_another_manifest_is_refused(job: Job) -> None:
    name = job.future_name()
    manifest = Manifest.from_json(job.files(job.newer)[1].read_bytes())
    job.forge(_evil(job, job.newer), name, manifest)
    shutil.copy(job.files(job.newer)[2], job.files(name)[2])
    _refused_untouched(job, name, "is not of this manifest")


def test_a_deleted_signature_is_refused_unless_allow_unsigned(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    job.files(job.newer)[2].unlink()
    _refused_untouched(job, job.newer, r"untrusted: unsigned: no signature.*allow_unsigned=True")
    target = f"unsigned_{uuid.uuid4().hex[:6]}"
    job.pg.createdb(target)
    with caplog.at_level(logging.WARNING):
        result = dbstash.restore(job.settings, job.newer, target=job.pg.uri(database=target), allow_unsigned=True)
    assert result.name == job.newer
    assert job.pg.psql(f"SELECT count(*) FROM {job.table}", target) == "501"
    assert "as allow_unsigned asks" in caplog.text


def test_verify_refuses_an_untrusted_backup_and_leaves_its_scratch_target_alone(job: Job) -> None:
    _, mpath, _ = job.files(job.newer)
    job.forge(_evil(job, job.newer), job.newer, Manifest.from_json(mpath.read_bytes()))
    scratch = f"scratch_{uuid.uuid4().hex[:6]}"
    job.pg.createdb(scratch)
    with pytest.raises(RestoreRefused, match="not of this manifest"):
        dbstash.verify(job.settings, job.newer, target=job.pg.uri(database=scratch))
    assert not job.pwned(scratch)


# -- retention -----------------------------------------------------------------------------------
def test_retention_never_counts_an_untrusted_backup_as_kept(
    sqlite_db: Path, keys: dict[str, SshKey], tmp_path: Path
) -> None:
    key = keys["backup"]
    remote = tmp_path / "remote"
    settings = Settings.create(
        f"sqlite:///{sqlite_db}",
        remote=str(remote),
        signing_key=key.private,
        trusted_keys=key.public,
        retention_max_files=2,
    )
    first = dbstash.backup(settings=settings).name
    manifest = Manifest.from_json((remote / manifest_name(first)).read_bytes())
    planted = []
    for hours in (1, 2, 3):  # newer than anything real: they would fill the two kept slots if counted
        name = settings.template().render(datetime.now(UTC) + timedelta(hours=hours))
        content = b"-- planted\n"
        (remote / name).write_bytes(content)
        (remote / manifest_name(name)).write_bytes(
            replace(manifest, name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest()).to_json()
        )
        planted.append(name)
    runs = [first] + [dbstash.backup(settings=settings).name for _ in range(2)]
    left = {p.name for p in remote.iterdir()}
    assert runs[0] not in left, "the oldest real backup went: the planted ones were not counted"
    assert {runs[1], runs[2]} <= left
    assert set(planted) <= left, "and they were not deleted either: retention deletes only what it proved"
    for name in runs[1:]:
        assert signature_name(manifest_name(name)) in left
    assert signature_name(manifest_name(runs[0])) not in left, "a backup's signature goes with it"


# -- the entrypoint and the CLI ------------------------------------------------------------------
def test_env_path_signs_lists_and_refuses(sqlite_db: Path, keys: dict[str, SshKey], tmp_path: Path) -> None:
    key = keys["backup"]
    remote = tmp_path / "remote"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "DB_URI": f"sqlite:///{sqlite_db}",
        "RCLONE_REMOTE": str(remote),
        "BACKUP_SCHEDULE": "once",
        "LOG_FORMAT": "json",
        **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ},
    }

    def cli(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DBSTASH, *args], env={**env, **more}, capture_output=True, text=True, timeout=120)

    loose = tmp_path / "loose"
    shutil.copy(key.private, loose)
    loose.chmod(0o640)
    bad = cli("run", BACKUP_SIGNING_KEY_FILE=str(loose))
    assert bad.returncode == 2 and "BACKUP_SIGNING_KEY_FILE" in bad.stderr and "chmod 600" in bad.stderr
    assert not remote.exists() or not any(remote.iterdir()), "nothing was uploaded"
    bad = cli("list", BACKUP_TRUSTED_KEYS="ssh-ed25519 nope")
    assert bad.returncode == 2 and "BACKUP_TRUSTED_KEYS" in bad.stderr
    done = cli("run", BACKUP_SIGNING_KEY_FILE=str(key.private))
    assert done.returncode == 0, done.stderr
    assert key.secret_line not in done.stdout + done.stderr
    dry = cli("run", "--dry-run", BACKUP_SIGNING_KEY_FILE=str(key.private))
    assert key.secret_line not in dry.stdout + dry.stderr
    [name] = [p.name for p in remote.iterdir() if p.name.endswith(".sql")]
    listed = cli("list", BACKUP_TRUSTED_KEYS=key.public)
    assert listed.returncode == 0 and "signed SHA256:" in listed.stdout
    as_json = json.loads(cli("list", "--json", BACKUP_TRUSTED_KEYS=key.public).stdout)
    assert as_json["backups"][0]["signed_by"].startswith("SHA256:")
    (remote / signature_name(manifest_name(name))).write_text(
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"
    )
    trusted_file = tmp_path / "allowed_signers"
    trusted_file.write_text(f"backup@dbstash {key.public}\n")
    listed = cli("list", BACKUP_TRUSTED_KEYS_FILE=str(trusted_file))
    assert "untrusted (" in listed.stdout, listed.stdout
    out = tmp_path / "restored.db"
    refused = cli("restore", "--backup", name, "--target", str(out), BACKUP_TRUSTED_KEYS_FILE=str(trusted_file))
    assert refused.returncode == 1 and "untrusted" in refused.stderr and not out.exists()
