"""The docs site builds, and its API reference renders as a Python developer expects.

``mkdocs build --strict`` alone is not enough: a broken ``>>>`` example or an unresolved
cross-reference is logged at INFO and the build passes. This test builds the real site with the
project's mkdocs.yml and looks for the marks of broken rendering in the HTML it produced.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dbstash

ROOT = Path(__file__).resolve().parents[2]
#: What a log line says when mkdocs/mkdocstrings could not render or resolve something.
BROKEN_LOG = re.compile(r"unrecognized|not found|could not|cannot|doctest|does not contain|failed", re.I)
#: A Sphinx role (``:func:`x```) left as text: mkdocstrings does not read them.
RAW_ROLE = re.compile(r":(?:func|class|meth|attr|exc|mod|data|obj|ref):`")
PRE_OR_CODE = re.compile(r"<(pre|code)\b.*?</\1>", re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is not installed: run the README's test command (it installs dbstash[dev])")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stderr


def _text_outside_code(page: Path) -> str:
    body = page.read_text(encoding="utf-8")
    main = body[body.find("<article") : body.rfind("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", PRE_OR_CODE.sub("", main)))


def test_the_build_logs_nothing_broken(site: tuple[Path, str]) -> None:
    _, log = site
    broken = [line for line in log.splitlines() if "WARNING" in line or BROKEN_LOG.search(line)]
    assert broken == []


def test_no_page_shows_the_marks_of_broken_rendering(site: tuple[Path, str]) -> None:
    out, _ = site
    pages = sorted(out.rglob("index.html"))
    assert len(pages) > 20, pages  # the whole nav was built
    marks: list[str] = []
    for page in pages:
        text = _text_outside_code(page)
        name = page.relative_to(out).as_posix()
        marks += [f"{name}: a >>> example outside a code block" for _ in re.finditer(r"^\s*>>>", text, re.M)]
        marks += [f"{name}: raw role {m.group(0)}" for m in RAW_ROLE.finditer(text)]
        marks += [f"{name}: visible doctest directive" for _ in re.finditer(r"doctest:", text)]
    assert marks == []


def test_every_public_name_has_an_entry_in_the_api_reference(site: tuple[Path, str]) -> None:
    out, _ = site
    api = (out / "api" / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="(dbstash\.[A-Za-z0-9_.]+)"', api))
    missing = [name for name in dbstash.__all__ if f"dbstash.{name}" not in anchors]
    assert missing == []


def test_api_entries_have_typed_signatures_and_linked_examples(site: tuple[Path, str]) -> None:
    out, _ = site
    api = (out / "api" / "index.html").read_text(encoding="utf-8")
    # the heading of backup() names it as users import it, and its signature carries types
    assert 'id="dbstash.backup"' in api
    entry = api[api.index('id="dbstash.backup"') :][:20000]
    signature = html.unescape(re.sub(r"<[^>]+>", "", entry[entry.index("<pre") : entry.index("</pre>")]))
    assert "uri: str | None" in signature and "-> BackupResult" in signature, signature
    # examples are code blocks, and cross-references are links to their entries
    assert "highlight" in entry and 'href="#dbstash.abackup"' in api


def test_the_transports_page_quotes_the_rc_timeouts_rcoptions_has() -> None:
    import dataclasses

    page = (ROOT / "docs" / "transports.md").read_text(encoding="utf-8")
    text = " ".join(page.split())
    defaults = {f.name: f.default for f in dataclasses.fields(dbstash.RcOptions) if f.name.endswith("_timeout")}
    assert set(defaults) == {"connect_timeout", "op_timeout", "commit_timeout"}
    for name, default in defaults.items():
        assert f"`{name}` ({default:g} s)" in text, name
