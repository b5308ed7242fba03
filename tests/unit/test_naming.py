from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dbstash import ConfigError, NameTemplate
from dbstash.jobs.naming import PARTIAL_MARK, is_partial, partial_name

WHEN = datetime(2026, 2, 7, 2, 0, 0, tzinfo=UTC)


def t(template: str = "{db}-{date}-{time}", db: str = "myapp", ext: str = ".sql") -> NameTemplate:
    return NameTemplate.parse(template, db=db, engine="pg", extension=ext)


def test_spec_default_name() -> None:
    assert t().render(WHEN) == "myapp-2026-02-07-020000.sql"


def test_every_token() -> None:
    name = t("{engine}_{db}_{date}_{time}_{ts}_{uuid}", ext=".dump").render(WHEN, uuid="a1b2c3d4")
    assert name == "pg_myapp_2026-02-07_020000_1770429600_a1b2c3d4.dump"


def test_uuid_is_random_8_hex() -> None:
    a, b = t("{uuid}").render(WHEN), t("{uuid}").render(WHEN)
    assert a != b and len(a) == 8 + 4


@pytest.mark.parametrize("bad", ["", "   ", "{nope}", "a/b-{db}", "../{db}", "{db", "x}", "a\\b", ".."])
def test_rejects_bad_templates(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        t(bad)
    assert info.value.variable == "BACKUP_NAME_TEMPLATE"


@pytest.mark.parametrize("db", ["a/b", "..", "x/../y"])
def test_rejects_tokens_that_escape_the_folder(db: str) -> None:
    # the database name is at fault, not the template: the error names DB_NAME (issue 14, item 12)
    with pytest.raises(ConfigError, match="database name usable in an object name") as info:
        t(db=db)
    assert info.value.variable == "DB_NAME"


def test_a_template_without_db_keeps_blaming_the_template_for_bad_tokens() -> None:
    with pytest.raises(ConfigError, match="inside the remote folder") as info:
        NameTemplate.parse("{engine}-{date}", db="a/b", engine="../x", extension=".sql")
    assert info.value.variable == "BACKUP_NAME_TEMPLATE"


def test_pattern_matches_own_names_only() -> None:
    tpl = t()
    assert tpl.matches("myapp-2026-02-07-020000.sql")
    assert not tpl.matches("other-2026-02-07-020000.sql")
    assert not tpl.matches("myapp-2026-02-07-020000.sql.bak")
    assert not tpl.matches("myapp-2026-02-07-020000.dump")
    assert not tpl.matches(partial_name("myapp-2026-02-07-020000.sql", "abcd1234"))
    assert not tpl.matches("myapp-2026-02-07-02000.sql")


def test_regex_metacharacters_in_db_are_literal() -> None:
    tpl = t(db="a.b+c")
    assert tpl.matches("a.b+c-2026-02-07-020000.sql")
    assert not tpl.matches("aXb+c-2026-02-07-020000.sql")


def test_timestamp_from_name_in_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    assert t().timestamp_of("myapp-2026-02-07-073000.sql", kolkata) == WHEN
    assert t("{db}-{ts}").timestamp_of("myapp-1770429600.sql", UTC) == WHEN  # type: ignore[arg-type]
    assert t("{db}-{uuid}").timestamp_of("myapp-a1b2c3d4.sql", kolkata) is None
    assert t().timestamp_of("myapp-2026-13-45-999999.sql", kolkata) is None


def test_partial_names() -> None:
    p = partial_name("x.sql", "1234abcd")
    assert is_partial(p) and p.endswith(PARTIAL_MARK) and p.startswith("x.sql.")
    assert not is_partial("x.sql")


def test_has_time() -> None:
    assert t().has_time and t("{ts}").has_time
    assert not t("{db}").has_time and not t("{db}-{date}").has_time


def test_a_second_with_a_suffixed_backup_is_in_use_whatever_the_new_suffix_ends_with() -> None:
    """The plain name of a second that holds a suffixed backup is never taken again, even when the new
    run's suffix ends with the same characters as the name's time (a 1-in-16 chance per run: ``...36``
    after ``103736``, which once made CI's same-second test take the plain name and sort it first)."""
    from dbstash.parts.sink import RemoteEntry
    from dbstash.storage.base import in_use

    t = NameTemplate.parse("{db}-{date}-{time}", db="app", engine="sqlite", extension=".sql")
    when = datetime(2026, 12, 3, 10, 37, 36, 355764, tzinfo=UTC)
    name = t.render(when)
    earlier = RemoteEntry(t.alternative(name, "41aaaaaa", when) or "", 10, when)
    for run_id in ("36ffffff", "e6ffffff", "dd000000", "a1000000"):
        later = when.replace(microsecond=900000 + int(run_id[:2], 16))
        alternative = t.alternative(name, run_id, later)
        assert alternative is not None and alternative.endswith(run_id[:2] + ".sql")
        assert in_use([earlier], name, alternative, None), alternative
        assert not in_use([], name, alternative, None)
