"""dbstash.contrib.django for real: a Django project in a temp folder, ``manage.py``-style commands run
by Django itself in a subprocess (settings are per process), a real SQLite file and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from dbstash.jobs.manifest import MANIFEST_SUFFIX
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration

SETTINGS = """
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "dbstash.contrib.django"]
DATABASES = {databases}
DBSTASH = {dbstash}
"""


def project(root: Path, databases: Mapping[str, object], dbstash: Mapping[str, object]) -> dict[str, str]:
    """A settings module in *root*; the environment that runs django-admin with it."""
    (root / "proj_settings.py").write_text(textwrap.dedent(SETTINGS.format(databases=databases, dbstash=dbstash)))
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), *sys.path]),
        "DJANGO_SETTINGS_MODULE": "proj_settings",
    }


def django(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def backups(remote: Path) -> list[str]:
    return sorted(p.name for p in remote.iterdir() if not p.name.endswith(MANIFEST_SUFFIX)) if remote.exists() else []


def test_migrate_backs_up_first_only_when_there_is_something_to_migrate(tmp_path: Path) -> None:
    remote = tmp_path / "backups"
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}  # relative to the cwd
    env = project(tmp_path, sqlite, {"remote": str(remote), "backup_before_migrate": True})
    first = django(env, tmp_path, "migrate", "contenttypes")
    assert first.returncode == 0, first.stderr
    assert backups(remote) == [], "a database that holds nothing yet is not backed up"
    second = django(env, tmp_path, "migrate")  # auth's migrations on a database that has contenttypes
    assert second.returncode == 0, second.stderr
    (made,) = backups(remote)
    dump = (remote / made).read_text()
    assert "django_content_type" in dump and "auth_user" not in dump, "the state before the migration"
    again = django(env, tmp_path, "migrate")  # an empty plan
    assert again.returncode == 0 and backups(remote) == [made]
    listed = django(env, tmp_path, "dbstash_list")
    assert listed.returncode == 0 and made in listed.stdout
    now = django(env, tmp_path, "dbstash_backup", "--json")
    assert now.returncode == 0, now.stderr
    assert json.loads(now.stdout)["name"] in backups(remote)
    into = tmp_path / "restored.sqlite3"
    restored = django(env, tmp_path, "dbstash_restore", "--backup", made, "--target", f"sqlite://{into}")
    assert restored.returncode == 0, restored.stderr
    assert "sha256 verified" in restored.stdout and into.exists()


def test_a_failed_backup_stops_the_migration(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the backup folder should be")
    sqlite = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}}
    env = project(tmp_path, sqlite, {"remote": str(blocker / "backups"), "backup_before_migrate": True})
    assert django(env, tmp_path, "migrate", "contenttypes").returncode == 0
    failed = django(env, tmp_path, "migrate")
    assert failed.returncode != 0
    assert "the backup before migrating failed, so nothing was migrated" in failed.stderr
    tables = subprocess.run(
        ["sqlite3", str(tmp_path / "db.sqlite3"), ".tables"], capture_output=True, text=True, check=True
    ).stdout
    assert "auth_user" not in tables, "the migration did not start"


def test_the_test_runner_database_is_not_backed_up(tmp_path: Path) -> None:
    remote = tmp_path / "backups"
    sqlite = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(tmp_path / "db.sqlite3"),
            "TEST": {"NAME": str(tmp_path / "test.sqlite3")},
        }
    }
    env = project(tmp_path, sqlite, {"remote": str(remote), "backup_before_migrate": True})
    (tmp_path / "test_nothing.py").write_text(
        "from django.test import TestCase\n\nclass T(TestCase):\n    def test_ok(self):\n        pass\n"
    )
    ran = django(env, tmp_path, "test", "test_nothing")
    assert ran.returncode == 0, ran.stderr
    assert backups(remote) == []


def test_postgres_settings_with_a_password_and_options(pg: PgServer, tmp_path: Path) -> None:
    remote = tmp_path / "backups"
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")},
        "pg": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": pg.database,
            "USER": pg.user,
            "PASSWORD": pg.password,
            "HOST": "127.0.0.1",
            "PORT": str(pg.port),
            "OPTIONS": {"sslmode": "disable", "isolation_level": 1},
        },
    }
    env = project(tmp_path, databases, {"remote": str(remote), "compress": "zstd"})
    done = django(env, tmp_path, "dbstash_backup", "--database", "pg", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["database"] == pg.database and result["name"].endswith(".sql.zst")
    assert pg.password not in done.stdout + done.stderr
    missing = django(env, tmp_path, "dbstash_backup", "--database", "nosuch")
    assert missing.returncode != 0 and "a DATABASES alias" in missing.stderr


def test_on_postgres_migrate_backs_up_once_and_dbstash_restore_brings_the_rows_back(
    pg: PgServer, tmp_path: Path
) -> None:
    name = f"dj_{os.urandom(3).hex()}"
    pg.createdb(name)
    remote = tmp_path / "backups"
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": pg.user,
            "PASSWORD": pg.password,
            "HOST": "127.0.0.1",
            "PORT": str(pg.port),
        }
    }
    databases["copy"] = {**databases["default"], "NAME": f"{name}_copy"}
    env = project(tmp_path, databases, {"remote": str(remote), "backup_before_migrate": True})
    first = django(env, tmp_path, "migrate", "contenttypes")
    assert first.returncode == 0, first.stderr
    assert backups(remote) == [], "a database that holds nothing yet is not backed up"
    second = django(env, tmp_path, "migrate")  # auth's migrations: work to do, so a backup first
    assert second.returncode == 0, second.stderr
    (made,) = backups(remote)
    again = django(env, tmp_path, "migrate")  # an empty plan: no backup
    assert again.returncode == 0 and backups(remote) == [made]

    into = f"{name}_restored"
    pg.createdb(into)
    restored = django(
        env, tmp_path, "dbstash_restore", "--backup", made, "--target", pg.uri(password=False, database=into)
    )
    assert restored.returncode == 0, restored.stderr
    assert "sha256 verified" in restored.stdout
    assert pg.password not in restored.stdout + restored.stderr
    # the restored database is the state before auth's migrations: contenttypes' rows, no auth tables
    query = "SELECT app, name FROM django_migrations ORDER BY app, name"
    before_auth = [row for row in pg.psql(query, name).splitlines() if not row.startswith(("auth|", "dbstash"))]
    assert pg.psql(query, into).splitlines() == before_auth
    assert pg.psql("SELECT count(*) FROM django_content_type", into) != ""
    assert pg.psql("SELECT to_regclass('auth_user') IS NULL", into) == "t"

    pg.createdb(f"{name}_copy")  # --into: another DATABASES entry, logged into with its own PASSWORD
    copied = django(env, tmp_path, "dbstash_restore", "--backup", made, "--into", "copy")
    assert copied.returncode == 0, copied.stderr
    assert pg.psql(query, f"{name}_copy").splitlines() == before_auth
    taken = django(env, tmp_path, "dbstash_restore", "--backup", made, "--into", "copy")
    assert taken.returncode != 0 and "pass --force" in taken.stderr, "a second restore needs --force"
