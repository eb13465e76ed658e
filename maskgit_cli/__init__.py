"""maskgit: MaskGIT image inpainting end to end (VQGAN tokens, masked token training, iterative decoding, FID)."""

__version__ = "0.1.0"
