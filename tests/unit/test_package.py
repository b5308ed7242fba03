"""The package's shape: one table of public names, old module paths kept, no private imports across modules."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import dbstash

SRC = Path(dbstash.__file__).resolve().parent.parent


def _type_checking_imports() -> dict[str, tuple[str, ...]]:
    tree = ast.parse((SRC / "dbstash" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    found: dict[str, tuple[str, ...]] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: an explicit re-export is written 'X as X'"
        found[node.module] = tuple(a.name for a in node.names)
    return found


def test_the_type_checkers_view_is_the_table() -> None:
    assert _type_checking_imports() == dbstash._EXPORTS


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    assert dbstash.__all__ == sorted(dbstash.__all__)
    assert len(dbstash.__all__) == len(set(dbstash.__all__))
    for module, names in dbstash._EXPORTS.items():
        for name in names:
            assert getattr(dbstash, name) is getattr(importlib.import_module(module), name), name
    for name in dbstash.__all__:
        assert getattr(dbstash, name) is not None


def test_no_module_is_named_like_a_function_the_package_exports() -> None:
    # dbstash.restore is the function: a module of that name would replace it when first imported
    functions = [n for n in dbstash.__all__ if inspect.isfunction(getattr(dbstash, n))]
    assert "restore" in functions and "verify" in functions and "prune" in functions
    clashes = [n for n in functions if importlib.util.find_spec(f"dbstash.{n}") is not None]
    assert clashes == []


def test_importing_every_module_leaves_the_functions_in_place() -> None:
    # a fresh interpreter: the read side's modules imported by path, then the names looked up
    code = (
        "import dbstash.restoring.restore, dbstash.restoring.verify, dbstash.jobs.prune, dbstash\n"
        "assert callable(dbstash.restore) and callable(dbstash.verify) and callable(dbstash.prune)\n"
        "print(dbstash.restore.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "dbstash.restoring.restore"


@pytest.mark.parametrize("old", sorted(dbstash.MOVED_MODULES))
def test_a_moved_module_keeps_its_old_path_with_a_warning(old: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(dbstash.MOVED_MODULES[old])
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message) for w in caught)


def test_the_old_paths_lead_where_the_modules_are() -> None:
    for old, new in dbstash.MOVED_MODULES.items():
        assert importlib.util.find_spec(new) is not None, new
        assert not (SRC / (old.replace(".", "/") + ".py")).exists(), f"{old} is both moved and still there"


def test_no_module_imports_another_modules_private_names() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(("dbstash", "dbstash_cli")):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.module} {private}")
    assert found == []


def test_settings_are_a_leaf_that_loads_neither_the_pipeline_nor_storage() -> None:
    code = (
        "import sys, dbstash.settings.config, dbstash.settings.env\n"
        "print(' '.join(m for m in sys.modules if m.startswith(('dbstash.storage', 'dbstash.parts.pipeline',"
        " 'dbstash.parts.relay', 'dbstash.parts.source', 'dbstash.parts.sink'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []


def test_the_stall_timeout_default_is_one_number() -> None:
    from dbstash.parts import relay
    from dbstash.settings import options

    assert relay.DEFAULT_STALL_TIMEOUT == options.DEFAULT_STALL_TIMEOUT


def test_a_module_over_400_lines_says_why_at_its_top() -> None:
    unexplained = []
    for path in sorted((SRC / "dbstash").rglob("*.py")):
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text)) or ""
        if text.count("\n") > 400 and "on purpose" not in doc:
            unexplained.append(str(path.relative_to(SRC)))
    assert unexplained == []


def test_no_function_is_too_complex_to_read() -> None:
    # radon's cyclomatic complexity (what ``radon cc -n D src`` ranks D and worse: over 20)
    from radon.complexity import cc_visit  # type: ignore[import-untyped]

    found = []
    for path in sorted((SRC / "dbstash").rglob("*.py")):
        for block in cc_visit(path.read_text()):
            for item in [block, *getattr(block, "methods", [])]:
                if item.complexity > 20:
                    found.append(f"{path.relative_to(SRC)}:{item.lineno} {item.name} {item.complexity}")
    assert found == []


def test_the_changelog_s_newest_entry_is_this_version() -> None:
    import re
    from pathlib import Path

    import dbstash

    text = (Path(__file__).resolve().parents[2] / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = re.search(r"^## (\S+)", text, re.M)
    assert newest is not None and newest.group(1) == dbstash.__version__
