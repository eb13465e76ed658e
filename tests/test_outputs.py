"""Output folders (data/outputs.py): the guard, and the writer that puts a folder in place whole or not at all,
replacing it (inpaint, sweep) or merging into it (masks). The commands' own tests cover the messages they print."""

from __future__ import annotations

import os

import numpy as np
import pytest

from maskgit_cli.data.outputs import FolderWriter, blocker, check_output_folder, writing
from maskgit_cli.errors import MaskgitError

PIXELS = np.zeros((2, 2), np.uint8)


def test_replace_puts_the_new_folder_in_place_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    with FolderWriter(out) as tmp:
        assert tmp.parent == tmp_path and not (out / "new.txt").exists()  # staged beside, nothing visible yet
        (tmp / "new.txt").write_text("this run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and [p.name for p in out.iterdir()] == ["new.txt"]


def test_a_failure_leaves_the_folder_and_no_staging_or_made_parents(tmp_path, file_tree):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("earlier run")
    before = file_tree(tmp_path)
    for out in (tmp_path / "out", tmp_path / "new" / "deeper" / "out"):
        with pytest.raises(OSError) as e, FolderWriter(out) as tmp:
            (tmp / "a.txt").write_text("half")
            raise OSError(28, "No space left on device", str(tmp / "b.txt"))
        assert e.value.filename == str(out / "b.txt")  # the real place, not the staging folder
        assert file_tree(tmp_path) == before


def test_merge_keeps_the_other_files_and_names_the_folder_on_errors(tmp_path, monkeypatch, file_tree):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "a.png").write_bytes(b"old")
    with writing(FolderWriter(out, merge=True, what="the masks")) as (tmp,):
        assert tmp.parent == out  # staged inside: one rename per file
    before = file_tree(tmp_path)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    writer = FolderWriter(out, merge=True, what="the masks")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(MaskgitError) as e, writing(writer):
        writer.save("a.png", PIXELS, format="PNG")
    assert str(e.value) == f"{out}: cannot write the masks there (Permission denied); nothing was written."
    assert file_tree(tmp_path) == before
    monkeypatch.undo()
    writer = FolderWriter(out, merge=True, what="the masks")
    with writing(writer):
        writer.save("a.png", PIXELS, format="PNG")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "notes.txt"] and (out / "a.png").read_bytes() != b"old"


def test_folders_written_together_appear_together(tmp_path, file_tree):
    first, second = FolderWriter(tmp_path / "a", merge=True), FolderWriter(tmp_path / "b", merge=True)
    with pytest.raises(RuntimeError), writing(first, second):
        first.save("x.png", PIXELS, format="PNG")
        raise RuntimeError("a bad image halfway")
    assert file_tree(tmp_path) == {}
    first, second = FolderWriter(tmp_path / "a", merge=True), FolderWriter(tmp_path / "b", merge=True)
    with writing(first, second):
        first.save("x.png", PIXELS, format="PNG")
        second.save("y.png", PIXELS, format="PNG")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"] and (tmp_path / "b" / "y.png").is_file()


def test_the_guard(tmp_path):
    (tmp_path / "file").write_text("x")
    assert blocker(tmp_path / "file") == tmp_path / "file"
    assert blocker(tmp_path / "file" / "out" / "deeper") == tmp_path / "file"
    assert blocker(tmp_path / "new" / "out") is None
    with pytest.raises(MaskgitError, match="exists and is not a folder"):
        check_output_folder(tmp_path / "file", overwrite=True)
    with pytest.raises(MaskgitError, match="holds the input"):
        check_output_folder(tmp_path, overwrite=True, inputs=[tmp_path / "images"])
    with pytest.raises(MaskgitError, match="already holds results .e.g. file.; pass --overwrite"):
        check_output_folder(tmp_path, overwrite=False)
    assert check_output_folder(tmp_path / "new", overwrite=False) == tmp_path / "new"
