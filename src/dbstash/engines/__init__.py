"""Engine registry: one module per engine, looked up by key or URI scheme."""

from __future__ import annotations

import os

from dbstash.engines.base import Connection, DumpCommand, DumpOptions, Engine
from dbstash.engines.mongo import MongoEngine
from dbstash.engines.mysql import MariadbEngine, MysqlEngine
from dbstash.engines.postgres import PostgresEngine
from dbstash.engines.redis import RedisEngine
from dbstash.engines.sqlite import SqliteEngine
from dbstash.errors import ConfigError
from dbstash.redact import redact_uri

#: Engine classes by key. Adding an engine is one module plus one line here.
ENGINES: dict[str, type[Engine]] = {
    PostgresEngine.key: PostgresEngine,
    MysqlEngine.key: MysqlEngine,
    MariadbEngine.key: MariadbEngine,
    RedisEngine.key: RedisEngine,
    MongoEngine.key: MongoEngine,
    SqliteEngine.key: SqliteEngine,
}


#: Entry-point group through which installed packages add engines: ``clickhouse = "pkg.mod:ClickhouseEngine"``.
ENTRY_POINT_GROUP = "dbstash.engines"


def available_engines() -> dict[str, type[Engine]]:
    """The built-in engines, plus those installed packages declare in the ``dbstash.engines`` entry-point
    group (a built-in key is never replaced). A third-party engine is a package, not a patch of
    [`ENGINES`][dbstash.ENGINES]::

        [project.entry-points."dbstash.engines"]
        clickhouse = "dbstash_clickhouse:ClickhouseEngine"
    """
    from dbstash.plugins import entry_points_of  # noqa: PLC0415 - only when an unknown key is asked for

    found = dict(ENGINES)
    for ep in entry_points_of(ENTRY_POINT_GROUP):
        if ep.name in found:
            continue
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise TypeError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) is not an Engine subclass")
        found[ep.name] = cls
    return found


#: Engine keys that read each other's URIs (the spec's mysql:// serves MySQL and MariaDB alike).
FAMILIES = ({"mysql", "mariadb"},)


def same_family(a: str, b: str) -> bool:
    """Whether engine keys *a* and *b* are the same engine or share a URI form (mysql / mariadb)."""
    return a == b or any({a, b} <= family for family in FAMILIES)


def target_connection(engine: Engine, target: str, variable: str) -> Connection:
    """A restore or verify target for a backup of *engine*: a URI of the same engine family, or a
    file path for engines that restore into a file (``sqlite:`` URIs accepted there too)."""
    from dbstash.redact import GLOBAL_REDACTOR, uri_secrets  # noqa: PLC0415

    GLOBAL_REDACTOR.add(*uri_secrets(target))
    if engine.restores_to_file:
        path = engine.parse_uri(target, variable=variable).database if target.startswith("sqlite:") else target
        return Connection(engine.key, os.path.abspath(path or ""))
    other = engine_for_uri(target, variable=variable)
    if not same_family(engine.key, other.key):
        raise ConfigError(variable, f"a {engine.key} URI (the backup is {engine.key})", GLOBAL_REDACTOR(target))
    connection = engine.parse_uri(target, variable=variable)
    GLOBAL_REDACTOR.add(connection.password)
    return connection


def get_engine(key: str, *, variable: str = "DB_ENGINE") -> Engine:
    """The engine registered under *key* (``pg``, ``sqlite``, ...)."""
    if key in ENGINES:
        return ENGINES[key]()
    engines = available_engines()
    try:
        return engines[key]()
    except KeyError:
        raise ConfigError(variable, "one of " + ", ".join(sorted(engines)), key) from None


def engine_for_uri(uri: str, *, variable: str = "DB_URI") -> Engine:
    """The engine whose URI scheme *uri* uses."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    for cls in ENGINES.values():
        if scheme in cls.schemes:
            return cls()
    engines = available_engines()
    for cls in engines.values():
        if scheme in cls.schemes:
            return cls()
    schemes = sorted(s for cls in engines.values() for s in cls.schemes)
    raise ConfigError(variable, "a URI starting with " + ", ".join(f"{s}://" for s in schemes), redact_uri(uri))


__all__ = [
    "ENGINES",
    "Connection",
    "DumpCommand",
    "DumpOptions",
    "Engine",
    "available_engines",
    "engine_for_uri",
    "get_engine",
    "same_family",
    "target_connection",
]
