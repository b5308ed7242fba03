"""The Python examples run for real: a Django management command through Django's own
call_command, and an Alembic env.py doing a pre-migration backup before a real ``alembic upgrade``.
The Airflow DAG runs under real Airflow in tests/integration/test_airflow.py."""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from dbstash.jobs.manifest import MANIFEST_SUFFIX

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def backups(remote: Path) -> list[str]:
    return sorted(n for n in os.listdir(remote) if not n.endswith(MANIFEST_SUFFIX))


def test_django_management_command(sqlite_db: Path, tmp_path: Path) -> None:
    code = f"""
import django, io
from django.conf import settings
settings.configure(
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(sqlite_db)!r}}}}},
    BACKUP_REMOTE={str(tmp_path / "remote")!r},
    INSTALLED_APPS=[],
)
django.setup()
import importlib.util
spec = importlib.util.spec_from_file_location("backupdb", {str(EXAMPLES / "django" / "backupdb.py")!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from django.core.management import call_command
out = io.StringIO()
call_command(mod.Command(), keep=1, stdout=out)
call_command(mod.Command(), keep=1, stdout=out)
print(out.getvalue())
print(mod.database_uri({{"ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "web",
                         "PASSWORD": "pw", "HOST": "db", "PORT": "5432"}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "sha256=" in lines[0] and "bytes" in lines[0]
    assert lines[-1] == "postgresql://web@db:5432/app"  # no password in the URI
    assert len(backups(tmp_path / "remote")) == 1  # --keep 1: retention ran after the second backup


def test_alembic_env_backs_up_before_migrating(sqlite_db: Path, tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text((EXAMPLES / "alembic" / "env.py").read_text())
    (scripts / "script.py.mako").write_text("")
    (scripts / "versions" / "0001_add_column.py").write_text(
        'revision = "0001"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n'
        "from alembic import op\nimport sqlalchemy as sa\n"
        "def upgrade():\n    op.add_column('users', sa.Column('email', sa.Text()))\n"
        "def downgrade():\n    pass\n"
    )
    cfg = Config()
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("sqlalchemy.url", f"sqlite:///{sqlite_db}")
    remote = tmp_path / "remote"
    os.environ["BACKUP_REMOTE"] = str(remote)
    try:
        command.upgrade(cfg, "head")
    finally:
        del os.environ["BACKUP_REMOTE"]
    (name,) = backups(remote)
    assert "pre-migration" in name
    con = sqlite3.connect(sqlite_db)
    assert "email" in [r[1] for r in con.execute("PRAGMA table_info(users)")], "the migration ran after the backup"
    con.close()
    # the backup holds the schema from before the migration
    assert b"email" not in (remote / name).read_bytes()
