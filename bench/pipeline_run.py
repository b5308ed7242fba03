"""One Pipeline run for bench_pg.py: a pg_dump DumpSource into an rclone remote, on either relay path.

    python bench/pipeline_run.py fast|async   (DB_URI and RCLONE_REMOTE from the environment)

``fast``: no transform, so the raw-descriptor relay thread runs (both ends are pipes). ``async``: a
pass-through transform of the caller's own, which the relay thread cannot run, so the pipeline
takes its async ``receive()``/``send()`` loop into the same rclone pipe.
"""

from __future__ import annotations

import os
import sys

import anyio

import dbstash


class PassThrough(dbstash.Transform):
    """Changes nothing; being a user's transform, it makes the pipeline take the async path."""

    class _Step(dbstash.TransformStep):
        def feed(self, chunk: bytes, total: int) -> bytes:
            return chunk

    def start(self) -> dbstash.TransformStep:
        return self._Step()


async def main(path: str) -> None:
    settings = dbstash.Settings.create(os.environ["DB_URI"], remote=os.environ["RCLONE_REMOTE"])
    engine = settings.engine()
    source = dbstash.DumpSource(engine, settings.connection)
    transforms = [PassThrough()] if path == "async" else []
    async with dbstash.RcloneCliStorage(settings.remote) as storage:
        result = await dbstash.Pipeline(source, storage, transforms).run(f"pipeline-{path}-{os.getpid()}.sql")
    if result.fast_path is not (path == "fast"):
        sys.exit(f"expected the {path} path, the pipeline took the other one")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
