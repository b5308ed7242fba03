"""The CLI's progress bar (tqdm), drawn into a buffer: percentage and ETA with an estimate, never past 100 %."""

from __future__ import annotations

import io

from dbstash_cli.progress import TerminalProgress


def _frames(buf: io.StringIO) -> list[str]:
    return [f for f in buf.getvalue().replace("\n", "\r").split("\r") if f.strip()]


def test_with_an_estimate_the_bar_shows_a_percentage_and_an_eta() -> None:
    buf = io.StringIO()
    bar = TerminalProgress(1_000_000, stream=buf)
    bar(500_000)
    bar.finish()
    frames = _frames(buf)
    assert any(" 50%|" in f and "/~1.00MB" in f for f in frames), frames
    assert any("<" in f for f in frames)  # elapsed<remaining: the ETA


def test_past_the_estimate_it_counts_bytes_instead_of_claiming_more_than_100_percent() -> None:
    buf = io.StringIO()
    bar = TerminalProgress(1_000, stream=buf)
    bar(5_000)
    bar.finish()
    frames = _frames(buf)
    assert not any("%" in f and "500%" in f for f in frames), frames
    assert "5.00kB" in frames[-1] and "%" not in frames[-1], frames


def test_without_an_estimate_bytes_and_rate_only() -> None:
    buf = io.StringIO()
    bar = TerminalProgress(None, stream=buf)
    bar(2_500_000)
    bar.finish()
    assert "2.50MB" in _frames(buf)[-1] and "%" not in buf.getvalue()
