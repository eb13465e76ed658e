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
    assert len(lines) == 3  # one per advance; the closing line would repeat the last one, so it is not printed
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


def test_updates_within_a_long_batch_report_too(monkeypatch, capsys):
    """A batch of 64 images that takes minutes still shows its steps (inpaint's "step k/T" info)."""
    monkeypatch.delenv("MASKGIT_NO_PROGRESS", raising=False)
    monkeypatch.delenv("MASKGIT_FORCE_PROGRESS", raising=False)
    monkeypatch.setenv("MASKGIT_PROGRESS_EVERY", "0")
    with progress.progress_bar(64, "inpaint", unit="img") as bar:
        for t in range(3):
            bar.update(info=f"step {t + 1}/3")
        bar.advance(64)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.rsplit(", ", 1)[-1] for line in lines] == ["step 1/3", "step 2/3", "step 3/3", "step 3/3"]
    assert lines[-1].startswith("inpaint: 64/64 img (100%)") and len(set(lines)) == 4
