"""`maskgit fit`: a model of your own images in one command, every stage `make weights` runs, resumable.

IMAGES -> a validation split (held out by file-name hash, or ``--val``) -> `train-vqgan` -> `tune-decoder` ->
`tokenize` (train and val) -> `train` -> a model folder MODEL (vqgan.safetensors, transformer.safetensors,
card.json, README.md: :mod:`maskgit_cli.model_card`), each stage's run kept under MODEL/runs/<stage>/.

- :mod:`~maskgit_cli.fit.settings`: the stages' settings per preset and sizing (CPU or GPU) and the time budget's
  split, without torch (the command line reads them for its help);
- :mod:`~maskgit_cli.fit.split`: the training and validation images, and the validation masks;
- :mod:`~maskgit_cli.fit.budget`: ``--time-budget``: each stage's length from a short measured probe;
- :mod:`~maskgit_cli.fit.stages`: each stage started, resumed exactly, or skipped when done;
- :mod:`~maskgit_cli.fit.model`: :func:`fit_model`, the stages in order, the model folder and its card.

This package imports nothing heavy itself: ``from maskgit_cli.fit.model import fit_model``.
"""
