"""mkdocs hook: the configuration reference page is generated from dbstash.settings.envvars at build time."""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

from dbstash.settings.envvars import markdown


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "reference.md", content=markdown()))
    return files
