"""The CI build matrix, generated from containers/images.toml (the one list of engine x version).

    python containers/matrix.py            # {"include": [{"tag": "pg-16", "engine": "pg", ...}, ...]}
    python containers/matrix.py --check    # exit 1 if images.toml breaks the tag schema
    python containers/matrix.py --local    # what scripts/images.sh can build here, and why not the rest

Used by .github/workflows/build.yml (``fromJSON``), scripts/images.sh and tests/unit/test_containers.py.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The spec's engine keys and the tag schema <engine>-<major>.
ENGINES = ("pg", "mongo", "mysql", "mariadb", "redis", "sqlite")
TAG = re.compile(r"^(?P<engine>[a-z]+)-(?P<major>\d+|latest)$")
#: A connection URI per engine for the smoke test's dry run (nothing is contacted in a dry run).
SMOKE_URIS = {
    "pg": "postgresql://app@db:5432/app",
    "mongo": "mongodb://app@db:27017/app",
    "mysql": "mysql://app@db:3306/app",
    "mariadb": "mariadb://app@db:3306/app",
    "redis": "redis://db:6379/0",
    "sqlite": "sqlite:///data/app.db",
}
#: Build arguments each Dockerfile takes, per image field.
BUILD_ARGS = {"version": "ENGINE_MAJOR", "tools_version": "TOOLS_VERSION", "series": "SERIES"}
#: Where each engine's client tools come from in the release images (not reachable on the test machines).
VENDOR = {
    "pg": "apt.postgresql.org",
    "mongo": "repo.mongodb.org",
    "mariadb": "dlm.mariadb.com",
    "redis": "packages.redis.io",
    "mysql": "Oracle's mysql image",
}
#: What Debian bookworm itself ships of each engine's client tools.
DEBIAN_SHIPS = {
    "pg": "PostgreSQL 15 only",
    "mongo": "no MongoDB tools",
    "mariadb": "MariaDB 10.11 only",
    "redis": "Redis 7.0 only",
}


def load(path: Path = HERE / "images.toml") -> dict[str, Any]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def matrix(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per image: its tags, Dockerfile, build args and platforms."""
    rows = []
    for image in data["image"]:
        tag = f"{image['engine']}-{image['version']}"
        tags = [tag, *image.get("also", [])]
        rows.append(
            {
                "tag": tag,
                "engine": image["engine"],
                "version": image["version"],
                "dockerfile": f"containers/{image['dockerfile']}",
                "tags": ",".join(f"{data['registry']}:{t}" for t in tags),
                "build_args": "\n".join(f"{arg}={image[key]}" for key, arg in BUILD_ARGS.items() if key in image),
                "platforms": ",".join(data["platforms"]),
                "smoke_uri": SMOKE_URIS[image["engine"]],
            }
        )
    return rows


def local(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What a machine with Debian's mirror and no vendor repository can build (``build``: tag, Dockerfile,
    build arguments with ``CLIENT_SOURCE=debian``), and every other image with the reason (``not_built``)."""
    build, not_built = [], []
    for image in data["image"]:
        tag, engine = f"{image['engine']}-{image['version']}", image["engine"]
        if "debian" in image:
            args = [f"{arg}={image[key]}" for key, arg in BUILD_ARGS.items() if key in image]
            build.append(
                {
                    "tag": tag,
                    "engine": engine,
                    "dockerfile": f"containers/{image['dockerfile']}",
                    "build_args": [*args, "CLIENT_SOURCE=debian"],
                    "client_version": image["debian"],
                }
            )
        elif engine == "mysql":
            reason = f"its base is Oracle's mysql:{image['series']} image (Oracle Linux), not made from Debian packages"
            not_built.append({"tag": tag, "reason": reason})
        else:
            reason = f"client tools only from {VENDOR[engine]} (unreachable here); Debian bookworm ships "
            reason += DEBIAN_SHIPS[engine]
            not_built.append({"tag": tag, "reason": reason})
    return {"build": build, "not_built": not_built}


def problems(data: dict[str, Any]) -> list[str]:
    """Everything in *data* that breaks the tag schema."""
    found = []
    seen: set[str] = set()
    for image in data["image"]:
        for tag in [f"{image['engine']}-{image['version']}", *image.get("also", [])]:
            m = TAG.match(tag)
            if tag == "latest" or not m:
                found.append(f"{tag}: not <engine>-<major>")
                continue
            if m["engine"] != image["engine"] or m["engine"] not in ENGINES:
                found.append(f"{tag}: engine key must be one of {', '.join(ENGINES)} and match the image")
            if m["major"] == "latest" and m["engine"] not in ("pg", "mongo"):
                found.append(f"{tag}: only pg-latest and mongo-latest exist")
            if tag in seen:
                found.append(f"{tag}: used twice")
            seen.add(tag)
        if not (HERE / image["dockerfile"]).is_file():
            found.append(f"{image['dockerfile']}: no such Dockerfile")
    return found


def main() -> int:
    data = load()
    if "--check" in sys.argv:
        errors = problems(data)
        for e in errors:
            print(e, file=sys.stderr)
        return 1 if errors else 0
    if "--local" in sys.argv:
        print(json.dumps(local(data)))
        return 0
    print(json.dumps({"include": matrix(data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
