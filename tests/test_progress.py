"""Progress that a log file shows: plain lines with counts and speed when stderr is not a terminal."""

import re

from maskgit_cli import progress


def test_logs_get_progress_lines_with_speed(monkeypatch, capsys):
    monkeypatch.delenv("MASKGIT_NO_PROGRESS", raising=False)
    monkeypatch.delenv("MASKGIT_FORCE_PROGRESS", raising=False)
    monkeypatch.setenv("MASKGIT_PROGRESS_EVERY", "0")  # a line at every advance
    with progress.progress_bar(300, "tokenize", unit="img") as bar:
        for _ in range(3):
            bar.advance(100)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4  # one per advance, one at the end
    assert lines[0].startswith("tokenize: 100/300 img (33%), ") and re.search(r"[\d,.]+ img/s", lines[0])
    assert "eta" in lines[0] and lines[-1].startswith("tokenize: 300/300 img (100%)")


def test_lines_are_spaced_in_time(monkeypatch, capsys):
    monkeypatch.delenv("MASKGIT_NO_PROGRESS", raising=False)
    monkeypatch.delenv("MASKGIT_FORCE_PROGRESS", raising=False)
    monkeypatch.setenv("MASKGIT_PROGRESS_EVERY", "3600")
    with progress.progress_bar(None, "train", unit="img") as bar:
        for _ in range(50):
            bar.advance(1)
        bar.update(info="step 50/100 loss 1.2")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("train: 50 img, ") and lines[0].endswith("step 50/100 loss 1.2")


def test_silenced(monkeypatch, capsys):
    monkeypatch.setenv("MASKGIT_NO_PROGRESS", "1")
    with progress.progress_bar(10, "x") as bar:
        bar.advance(10)
    assert capsys.readouterr().err == ""
