"""Stage 1, the VQGAN: images <-> 16x16 token grids. Model, training, the lab's checkpoint, reconstructions, token
caches and the code patches they carry."""
