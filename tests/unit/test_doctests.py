"""The docstring examples of the public parts run (issue 15: each part has an example that runs)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dbstash.source",
    "dbstash.sink",
    "dbstash.pipeline",
    "dbstash.transforms",
    "dbstash.storage.memory",
    "dbstash.naming",
    "dbstash.redact",
    "dbstash.compression",
    "dbstash.databases",
    "dbstash.multi",
    "dbstash.encryption",
    "dbstash.signing",
    "dbstash.notify.apprise",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
