"""dbstash.contrib.sqlalchemy: URIs from SQLAlchemy URLs, and the backup before an Alembic migration,
with the real SQLAlchemy and Alembic against a real SQLite file and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config

import dbstash
from dbstash.contrib.sqlalchemy import uri_from_url
from tests.support.servers import PgServer

pytestmark = pytest.mark.integration

ENV_PY = """
import os
from alembic import context
from sqlalchemy import engine_from_config, pool
from dbstash.contrib.sqlalchemy import backup_before_migration

config = context.config
section = config.get_section(config.config_ini_section, {})
engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    made = backup_before_migration(context, remote=os.environ["TEST_BACKUP_REMOTE"])
    config.attributes["backup"] = made
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """
revision = "0001"
down_revision = None
from alembic import op
import sqlalchemy as sa

def upgrade():
    op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True))

def downgrade():
    op.drop_table("accounts")
"""


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    before = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_uri_from_url_means_what_sqlalchemy_means(in_tmp: Path, pg: PgServer) -> None:
    assert uri_from_url("sqlite:///app.db") == f"sqlite://{in_tmp}/app.db"  # relative to the working directory
    assert uri_from_url("sqlite:////srv/app.db") == "sqlite:///srv/app.db"
    assert dbstash.Settings.create(uri_from_url("sqlite:///app.db"), remote="/r").connection.database == str(
        in_tmp / "app.db"
    )
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username="app",
        password="p@ss/w:rd",
        host="db",
        port=5433,
        database="app",
        query={"sslmode": "require"},
    )
    uri = uri_from_url(url)
    assert uri.startswith("postgresql://app:") and uri.endswith("@db:5433/app?sslmode=require")
    conn = dbstash.Settings.create(uri, remote="/r").connection
    assert (conn.password, conn.host, conn.port, conn.database) == ("p@ss/w:rd", "db", "5433", "app")
    engine = sqlalchemy.create_engine(f"sqlite:///{in_tmp}/e.db")
    assert uri_from_url(engine) == f"sqlite://{in_tmp}/e.db"
    assert uri_from_url("mysql+pymysql://root:pw@h/shop").startswith("mysql://root:pw@h/shop")
    for bad in ("sqlite://", "sqlite:///:memory:", "mssql+pyodbc://u:p@h/db"):
        with pytest.raises(dbstash.ConfigError) as err:
            uri_from_url(bad)
        assert err.value.variable == "url"


def _alembic(root: Path, url: str) -> Config:
    scripts = root / "migrations"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(textwrap.dedent(ENV_PY))
    (scripts / "script.py.mako").write_text("")
    (scripts / "versions" / "0001_accounts.py").write_text(textwrap.dedent(REVISION))
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _backups(remote: Path) -> list[str]:
    return sorted(p.name for p in remote.iterdir() if p.name.endswith(".sql")) if remote.exists() else []


def test_alembic_backs_up_only_before_a_migration_with_revisions_to_apply(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = in_tmp / "backups"
    monkeypatch.setenv("TEST_BACKUP_REMOTE", str(remote))
    sqlite3.connect("app.db").execute("CREATE TABLE notes (body TEXT)").connection.commit()
    config = _alembic(in_tmp, "sqlite:///app.db")  # SQLAlchemy's usual relative form
    command.current(config)
    assert config.attributes["backup"] is None and _backups(remote) == []
    command.upgrade(config, "head")
    made = config.attributes["backup"]
    assert made is not None and _backups(remote) == [made.name]
    assert "pre-migration" in made.name
    dump = (remote / made.name).read_text()
    assert "CREATE TABLE notes" in dump and "accounts" not in dump, "the state before the migration"
    command.upgrade(config, "head")  # nothing to apply
    assert config.attributes["backup"] is None and _backups(remote) == [made.name]
    command.stamp(config, "head")  # changes no schema
    assert config.attributes["backup"] is None and _backups(remote) == [made.name]
    command.downgrade(config, "base")  # a downgrade changes the schema too
    assert config.attributes["backup"] is not None and len(_backups(remote)) == 2


def test_alembic_on_postgres_with_a_driver_in_the_url(
    pg: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "backups"
    monkeypatch.setenv("TEST_BACKUP_REMOTE", str(remote))
    database = "alembic_pg"
    pg.psql(f"DROP DATABASE IF EXISTS {database}")
    pg.createdb(database)
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg", username=pg.user, password=pg.password, host="127.0.0.1", port=pg.port, database=database
    )
    config = _alembic(tmp_path, url.render_as_string(hide_password=False).replace("%", "%%"))
    command.upgrade(config, "head")
    made = config.attributes["backup"]
    assert made is not None and made.database == database
    assert pg.password not in str(made.to_dict())
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'accounts'", database=database) == "1"
