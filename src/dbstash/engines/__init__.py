"""Engine registry: one module per engine, looked up by key or URI scheme."""

from __future__ import annotations

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


def get_engine(key: str, *, variable: str = "DB_ENGINE") -> Engine:
    """The engine registered under *key* (``pg``, ``sqlite``, ...)."""
    try:
        return ENGINES[key]()
    except KeyError:
        raise ConfigError(variable, "one of " + ", ".join(sorted(ENGINES)), key) from None


def engine_for_uri(uri: str, *, variable: str = "DB_URI") -> Engine:
    """The engine whose URI scheme *uri* uses."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    for cls in ENGINES.values():
        if scheme in cls.schemes:
            return cls()
    schemes = sorted(s for cls in ENGINES.values() for s in cls.schemes)
    raise ConfigError(variable, "a URI starting with " + ", ".join(f"{s}://" for s in schemes), redact_uri(uri))


__all__ = [
    "ENGINES",
    "Connection",
    "DumpCommand",
    "DumpOptions",
    "Engine",
    "engine_for_uri",
    "get_engine",
]
