"""The training loop every trainer shares: run folders, settings, exact resume, checkpoints without pickle."""
