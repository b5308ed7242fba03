"""The CI build matrix, generated from containers/images.toml (the one list of engine x version).

    python containers/matrix.py            # {"include": [{"tag": "pg-16", "engine": "pg", ...}, ...]}
    python containers/matrix.py --check    # exit 1 if images.toml breaks the tag schema

Used by .github/workflows/build.yml (``fromJSON``) and by tests/unit/test_containers.py.
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
    print(json.dumps({"include": matrix(data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
