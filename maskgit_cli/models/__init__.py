"""Model definitions: the VQGAN (stage 1) and the bidirectional transformer (stage 2)."""
