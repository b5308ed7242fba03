"""Entry points of installed packages (third-party engines and notifiers), found cheaply.

``importlib.metadata`` costs ~15 ms to import and scan every installed distribution: on the hot path
of every run (the notifiers are looked up at start-up) that is a tenth of dbstash's fixed cost. So a
group is first looked for in the ``entry_points.txt`` files on ``sys.path`` (a glob and a few small
reads); only when one of them declares it does ``importlib.metadata`` load the entry points.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint


def declared(group: str) -> bool:
    """Whether any distribution on ``sys.path`` declares entry points in *group* (may say yes wrongly, never no)."""
    needle = f"[{group}]".encode()
    for entry in sys.path:
        if not os.path.isdir(entry or "."):
            continue  # a zip on sys.path: let importlib.metadata look inside
        pattern = os.path.join(glob.escape(entry or "."), "*.*-info", "entry_points.txt")
        for path in glob.glob(pattern):
            try:
                with open(path, "rb") as fh:
                    if needle in fh.read():
                        return True
            except OSError:
                return True  # unreadable: let importlib.metadata decide
    return any(entry and not os.path.isdir(entry) and os.path.exists(entry) for entry in sys.path)


def entry_points_of(group: str) -> list[EntryPoint]:
    """The entry points installed packages declare in *group* (none without importing importlib.metadata)."""
    if not declared(group):
        return []
    from importlib.metadata import entry_points  # noqa: PLC0415 - only when a package declares the group

    return list(entry_points(group=group))


__all__ = ["declared", "entry_points_of"]
