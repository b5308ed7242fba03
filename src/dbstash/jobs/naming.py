"""Backup name templates: rendering a name, and recognising this job's backups among a remote's files."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dbstash.errors import ConfigError

DEFAULT_TEMPLATE = "{db}-{date}-{time}"
TOKENS = ("db", "engine", "date", "time", "ts", "uuid")
_TOKEN = re.compile(r"\{([^{}]*)\}")
#: Suffix of an upload in progress (or of one a SIGKILL interrupted). Never matches a template.
PARTIAL_MARK = ".dbstash-partial"
_SAFE_NAME_CHARS = re.compile(r"^[^/\\\x00-\x1f]+$")


def _usable(value: str) -> bool:
    """Whether *value* can stand in an object name: no path separator, no ``..``, no control character."""
    return not (
        not value
        or "/" in value
        or "\\" in value
        or value in (".", "..")
        or ".." in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


@dataclass(frozen=True, slots=True)
class NameTemplate:
    """A validated ``BACKUP_NAME_TEMPLATE`` bound to one job (database name, engine key, extension).

    Examples:
        >>> t = NameTemplate.parse("{db}-{date}-{time}", db="app", engine="pg", extension=".sql")
        >>> t.render(datetime(2026, 2, 7, 2, 0, tzinfo=UTC), uuid="a1b2c3d4")
        'app-2026-02-07-020000.sql'
    """

    template: str
    db: str
    engine: str
    extension: str
    #: match any database name for ``{db}`` (the names of every database of a multi-database job)
    any_db: bool = False

    @classmethod
    def parse(
        cls,
        template: str,
        *,
        db: str,
        engine: str,
        extension: str,
        variable: str = "BACKUP_NAME_TEMPLATE",
        db_variable: str = "DB_NAME",
    ) -> NameTemplate:
        """Validate *template* and bind it; raises [`ConfigError`][dbstash.ConfigError] naming *variable*, or
        *db_variable* when the database name is what cannot become part of a file name."""
        expected = (
            "a file name made of text and the tokens {db} {engine} {date} {time} {ts} {uuid}, with no '/' and no '..'"
        )
        if not template or not template.strip():
            raise ConfigError(variable, expected, template)
        for token in _TOKEN.findall(template):
            if token not in TOKENS:
                raise ConfigError(variable, f"{expected} (unknown token {{{token}}})", template)
        literal = _TOKEN.sub("", template)
        if "{" in literal or "}" in literal:
            raise ConfigError(variable, f"{expected} (unbalanced brace)", template)
        if not _SAFE_NAME_CHARS.match(literal or "x") or ".." in literal:
            raise ConfigError(variable, expected, template)
        if "{db}" in template and not _usable(db):  # else any name a server holds will do
            raise ConfigError(
                db_variable,
                "a database name usable in an object name (no '/', '\\', '..' or control characters; "
                "leave it out with DB_EXCLUDE, or back it up in a job of its own with BACKUP_NAME_TEMPLATE)",
                repr(db),
            )
        if not _usable(engine):
            raise ConfigError(
                variable, f"a template whose tokens stay inside the remote folder (engine {engine!r})", template
            )
        t = cls(template=template, db=db, engine=engine, extension=extension)
        sample = t.render(datetime(2000, 1, 1, tzinfo=UTC), uuid="00000000")
        if sample in (".", "..") or (sample.startswith(".") and set(sample) == {"."}):
            raise ConfigError(variable, expected, template)
        if PARTIAL_MARK in sample:
            raise ConfigError(variable, f"{expected} (must not contain {PARTIAL_MARK!r})", template)
        return t

    @property
    def series(self) -> str:
        """The job's identity as names show it: the template with ``{db}`` and ``{engine}`` filled in
        (``app-pg-{date}-{time}``); manifests record it and signed ones vouch for it."""
        return self.template.replace("{db}", self.db).replace("{engine}", self.engine)

    def render(self, when: datetime, *, uuid: str | None = None) -> str:
        """The file name of a backup started at *when* (an aware datetime, already in the job's zone)."""
        values = {
            "db": self.db,
            "engine": self.engine,
            "date": when.strftime("%Y-%m-%d"),
            "time": when.strftime("%H%M%S"),
            "ts": str(int(when.timestamp())),
            "uuid": uuid or secrets.token_hex(4),
        }
        return _TOKEN.sub(lambda m: values[m.group(1)], self.template) + self.extension

    @property
    def has_time(self) -> bool:
        """Whether names carry their own timestamp (``{ts}``, or ``{date}`` with ``{time}``)."""
        tokens = set(_TOKEN.findall(self.template))
        return "ts" in tokens or {"date", "time"} <= tokens

    def alternative(self, name: str, run_id: str, started: datetime | None = None) -> str | None:
        """The name a run takes when *name* is already taken (another run of this job in the same second).

        ``app-2026-02-07-020000.sql`` -> ``app-2026-02-07-020000-a1b2c3d4.sql``. None when the template
        has ``{uuid}`` (already unique per run) or no time at all (a new backup replaces the old on purpose).
        """
        if "uuid" in set(_TOKEN.findall(self.template)) or not self.has_time:
            return None
        stem = name[: len(name) - len(self.extension)] if self.extension else name
        # sortable: the run's microseconds, then two characters of its id (see same_second_order)
        suffix = f"{started.microsecond:06d}{run_id[:2]}" if started is not None else run_id[:8]
        return f"{stem}-{suffix}{self.extension}"

    @property
    def unique(self) -> bool:
        """Whether two runs get different names (a time or ``{uuid}`` in the template)."""
        return self.has_time or "uuid" in set(_TOKEN.findall(self.template))

    def pattern(self) -> re.Pattern[str]:
        """An anchored regex matching exactly the names this template renders (and no partial upload)."""
        parts: list[str] = []
        pos = 0
        seen: set[str] = set()
        for m in _TOKEN.finditer(self.template):
            parts.append(re.escape(self.template[pos : m.start()]))
            token = m.group(1)
            group = token if token not in seen else None
            seen.add(token)
            body = {
                "db": r"[^/]+?" if self.any_db else re.escape(self.db),
                "engine": re.escape(self.engine),
                "date": r"\d{4}-\d{2}-\d{2}",
                "time": r"\d{6}",
                "ts": r"\d{1,12}",
                "uuid": r"[0-9a-f]{8}",
            }[token]
            parts.append(f"(?P<{group}>{body})" if group else f"(?:{body})")
            pos = m.end()
        parts.append(re.escape(self.template[pos:]))
        if "uuid" not in seen and self.has_time:
            parts.append(r"(?:-[0-9a-f]{8})?")  # a run that found its name taken (see alternative())
        # encrypted or not, the same job's series: a restore without the recipients, and retention across
        # switching BACKUP_ENCRYPT on, see both (``.age`` is encryption's suffix, see dbstash.parts.encryption)
        parts.append(re.escape(self.extension.removesuffix(".age")) + r"(?:\.age)?")
        return re.compile("^" + "".join(parts) + "$")

    def timestamp_of(self, name: str, tz: ZoneInfo) -> datetime | None:
        """When the backup called *name* was started, read from its name; None if the name does not say.

        Returns None too when *name* is not one of this template's names.
        """
        m = self.pattern().match(name)
        if not m:
            return None
        groups = m.groupdict()
        if groups.get("ts"):
            return datetime.fromtimestamp(int(groups["ts"]), tz=UTC)
        if groups.get("date") and groups.get("time"):
            try:
                naive = datetime.strptime(groups["date"] + groups["time"], "%Y-%m-%d%H%M%S")
            except ValueError:
                return None
            return naive.replace(tzinfo=tz).astimezone(UTC)
        if groups.get("date"):
            try:
                day = datetime.strptime(groups["date"], "%Y-%m-%d")
            except ValueError:
                return None
            # a date-only name: the end of that day, so age is never overestimated
            return (day.replace(tzinfo=tz) + timedelta(days=1) - timedelta(seconds=1)).astimezone(UTC)
        return None

    def database_of(self, name: str) -> str | None:
        """The ``{db}`` part of *name* (None when the template has no ``{db}`` or *name* is not its)."""
        m = self.pattern().match(name)
        return m.groupdict().get("db") if m else None

    def matches(self, name: str) -> bool:
        """Whether *name* is a complete backup made by this job (partial uploads never match)."""
        return bool(self.pattern().match(name))


def same_second_order(name: str) -> tuple[int, str]:
    """Orders the backups of one series taken in the same second, oldest first: the plain name (the
    first run claimed it) before the names with a ``-NNNNNNxx`` suffix (later runs), and those by the
    microseconds of their start (see [`NameTemplate.alternative()`][dbstash.NameTemplate.alternative])."""
    return len(name), name


def partial_name(final: str, upload_id: str) -> str:
    """The name an upload is written under until it is committed."""
    return f"{final}.{upload_id}{PARTIAL_MARK}"


def partial_target(name: str) -> str | None:
    """The final name an uncommitted upload called *name* was headed for (None if *name* is no partial)."""
    if not name.endswith(PARTIAL_MARK):
        return None
    head = name[: -len(PARTIAL_MARK)]
    final, dot, upload_id = head.rpartition(".")
    return final if dot and final and upload_id else None


def is_partial(name: str) -> bool:
    """Whether *name* is an uncommitted (in-progress or interrupted) upload."""
    return name.endswith(PARTIAL_MARK)
