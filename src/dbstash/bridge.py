"""The one sync bridge: each blocking function of the API is its async twin run on its own event loop.

`blocking()` makes the twin: the same parameters (its signature *is* the async one's), the
same result, and the same refusal everywhere to nest an event loop inside a running one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import anyio

P = ParamSpec("P")
T = TypeVar("T")


def refuse_running_loop(name: str, async_name: str) -> None:
    """Raise RuntimeError when called from inside a running event loop (a blocking call would nest one)."""
    try:
        anyio.get_current_task()
    except RuntimeError:  # no event loop in this thread: the normal case
        return
    raise RuntimeError(
        f"dbstash.{name}() was called from inside a running event loop; use 'await dbstash.{async_name}(...)'"
    )


def blocking(async_fn: Callable[P, Coroutine[Any, Any, T]], doc: str | None = None) -> Callable[P, T]:
    """The blocking twin of *async_fn* (``abackup`` -> ``backup``), documented by *doc*."""
    async_name = async_fn.__name__
    name = async_name.removeprefix("a")

    @functools.wraps(async_fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        refuse_running_loop(name, async_name)
        return anyio.run(functools.partial(async_fn, *args, **kwargs))

    run.__name__ = run.__qualname__ = name
    run.__doc__ = doc or (
        f"The blocking twin of [`{async_name}()`][dbstash.{async_name}]: the same parameters, its own event loop."
    )
    return run


__all__ = ["blocking", "refuse_running_loop"]
