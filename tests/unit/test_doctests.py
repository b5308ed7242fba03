"""The docstring examples of the public parts run (issue 15: each part has an example that runs)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dbstash.parts.source",
    "dbstash.parts.sink",
    "dbstash.parts.pipeline",
    "dbstash.parts.transforms",
    "dbstash.storage.memory",
    "dbstash.jobs.naming",
    "dbstash.redact",
    "dbstash.parts.compression",
    "dbstash.jobs.databases",
    "dbstash.jobs.multi",
    "dbstash.parts.encryption",
    "dbstash.jobs.signing",
    "dbstash.notify.apprise",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
