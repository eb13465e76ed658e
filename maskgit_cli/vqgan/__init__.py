"""Stage 1, the VQGAN: images <-> token grids (64x64 <-> 16x16 for the lab's; any resolution, :mod:`.resolution`).
Model, training, the lab's checkpoint, reconstructions, token caches and the code patches they carry."""
