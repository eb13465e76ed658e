"""The package's version, in its own home: pyproject.toml, `maskgit --version`, and the files maskgit writes
(weights' and FID statistics' metadata) read it from here."""

__version__ = "0.1.0"
