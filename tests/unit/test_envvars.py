"""The generated configuration reference cannot drift from the code: dbstash.settings.envvars.ENV_VARS is
exactly the set of variables Settings.from_env reads (found in its source), each documented once."""

from __future__ import annotations

import inspect
import re

from dbstash.settings import env as config  # the one env parser (Settings.from_env delegates to it)
from dbstash.settings.env import KEEP_PERIODS
from dbstash.settings.envvars import ENV_VARS, markdown


def read_by_from_env() -> set[str]:
    source = inspect.getsource(config)
    names = set(re.findall(r'(?:get|env\.get|env\[|\bvariable=)\(?"([A-Z][A-Z0-9_]+)"', source))
    names |= {f"RETENTION_KEEP_{p.upper()}" for p in KEEP_PERIODS}  # built with an f-string
    for name in re.findall(r'_secret_or_file\(env, "([A-Z][A-Z0-9_]+)"\)', source):  # NAME_FILE over NAME
        names |= {name, f"{name}_FILE"}
    return names


def test_every_variable_read_is_documented_and_vice_versa() -> None:
    documented = [v.name for v in ENV_VARS]
    assert len(documented) == len(set(documented)), "documented twice"
    assert set(documented) == read_by_from_env()


def test_reference_page_lists_every_variable_and_marks_secrets() -> None:
    page = markdown()
    for v in ENV_VARS:
        assert f"`{v.name}`" in page
    assert "`DB_PASSWORD` (**secret**)" in page and "`DB_HOST` (**secret**)" not in page
    assert page.count("\n## ") == len({v.section for v in ENV_VARS})
