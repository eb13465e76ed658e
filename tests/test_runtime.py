"""runtime.py: precision follows the hardware (auto), the VQGAN's own rule, one-line device errors."""

import pytest
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.runtime import autocast, native_bf16, resolve_device, resolve_precision, vqgan_autocast

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags", "native"),
    [("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True), ("", False)],
)
def test_native_bf16_reads_the_cpu_flags(tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert native_bf16(CPU, str(info)) is native
    assert native_bf16(CPU, str(tmp_path / "missing")) is False  # no /proc: no claim


def test_auto_precision_and_the_vqgan_rule(monkeypatch):
    import maskgit_cli.runtime as runtime

    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runtime, "native_bf16", lambda device, native=native: native)
        assert resolve_precision("auto", CPU) == want
        assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
        with autocast(CPU, "auto"):
            assert torch.is_autocast_enabled("cpu") is (want == "bf16")
        with autocast(CPU, "bf16"), vqgan_autocast(CPU):  # the VQGAN stays fp32 on a CPU, inside bf16 too
            assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(MaskgitError, match="--precision fp16"):
        resolve_precision("fp16", CPU)


def test_cuda_without_a_gpu_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(MaskgitError, match="--device cuda: CUDA is not available on this machine"):
        resolve_device("cuda")
