"""maskgit: MaskGIT image inpainting end to end (VQGAN tokens, masked token training, iterative decoding, FID)."""

from maskgit_cli._version import __version__ as __version__  # the version's home is _version.py


def __getattr__(name: str):
    """``from maskgit_cli import Inpainter`` without importing torch for everything else (the CLI stays fast)."""
    if name == "Inpainter":
        from maskgit_cli.decoding.pipeline import Inpainter

        return Inpainter
    raise AttributeError(f"module 'maskgit_cli' has no attribute {name!r}")
