#!/usr/bin/env bash
# The docs site into site/ (or pass mkdocs build arguments, e.g. -d /tmp/site). Works on a fresh clone:
# the build imports dbstash (scripts/mkdocs_hooks.py), so it needs the dev virtualenv, made here if missing.
source "$(dirname "$0")/lib.sh"
venv_ensure dev
cd "$ROOT"
NO_MKDOCS_2_WARNING=1 exec "$VENV/bin/mkdocs" build --strict "$@"
