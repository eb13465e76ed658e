"""memory.py: glibc keeps freed memory in the process (the CLI sets it before anything else)."""

import ctypes
import subprocess
import sys

import pytest

from maskgit_cli import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_thresholds_are_raised_on_glibc():
    if not hasattr(ctypes.CDLL("libc.so.6"), "mallopt"):
        pytest.skip("not glibc")
    assert memory.keep_freed_memory() is True
    assert memory.keep_freed_memory() is True  # idempotent


def test_no_glibc_is_no_error(monkeypatch):
    def no_libc(*args, **kwargs):
        raise OSError("no such library")

    monkeypatch.setattr(memory.ctypes, "CDLL", no_libc)
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False


def test_the_cli_sets_it_before_importing_torch():
    code = (
        "import sys; from maskgit_cli import memory; calls = []; "
        "memory.keep_freed_memory = lambda: calls.append('torch' in sys.modules) or True; "
        "from maskgit_cli.cli import main; sys.argv = ['maskgit', '--version']\n"
        "try: main()\nexcept SystemExit: pass\nprint(calls)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[False]"
