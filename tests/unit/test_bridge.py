"""The one sync bridge: every blocking function takes exactly its async twin's parameters and refuses to nest loops."""

from __future__ import annotations

import inspect

import anyio
import pytest

import dbstash

PAIRS = [n for n in dbstash.__all__ if f"a{n}" in dbstash.__all__ and callable(getattr(dbstash, n))]


def test_the_pairs_are_the_ones_the_api_documents() -> None:
    assert sorted(PAIRS) == [
        "backup",
        "backup_many",
        "list_backups",
        "prune",
        "restore",
        "restore_many",
        "verify",
        "verify_many",
    ]


@pytest.mark.parametrize("name", PAIRS)
def test_a_sync_twin_has_its_async_twins_signature(name: str) -> None:
    sync, asynchronous = getattr(dbstash, name), getattr(dbstash, f"a{name}")
    assert not inspect.iscoroutinefunction(sync) and inspect.iscoroutinefunction(asynchronous)
    assert inspect.signature(sync) == inspect.signature(asynchronous)
    assert sync.__name__ == name and sync.__doc__


@pytest.mark.parametrize("name", PAIRS)
def test_a_sync_twin_refuses_to_run_inside_an_event_loop(name: str) -> None:
    settings = dbstash.Settings.create("sqlite:////nonexistent/app.db", remote="/nonexistent")

    async def inside() -> None:
        with pytest.raises(RuntimeError, match=rf"dbstash.{name}\(\) was called from inside a running event loop"):
            getattr(dbstash, name)(settings)

    anyio.run(inside)
