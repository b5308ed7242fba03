"""Each subcommand shows only the options it uses (issue 15: the CLI stays thin)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dbstash_cli.main import cli


def _help(command: str) -> str:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["list", "restore", "verify"])
def test_reading_commands_list_no_retention_compression_or_dump_flags(command: str) -> None:
    text = _help(command)
    for flag in (
        "--retention-max-files",
        "--retention-keep-daily",
        "--compress",
        "--stream-compress",
        "--dump-extra-args",
        "--timeout",
    ):
        assert flag not in text, (command, flag)
    assert "--uri" in text and "--remote" in text and "--name-template" in text


def test_backup_lists_everything_and_prune_what_retention_needs() -> None:
    backup = _help("backup")
    for flag in ("--retention-max-files", "--stream-compress", "--dump-extra-args", "--timeout", "--dry-run"):
        assert flag in backup
    prune = _help("prune")
    assert "--retention-keep-daily" in prune and "--stream-compress" in prune  # compression changes names
    assert "--dump-extra-args" not in prune and "--timeout" not in prune
