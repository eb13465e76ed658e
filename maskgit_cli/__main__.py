"""`python -m maskgit_cli ...` is the same as `maskgit ...` (and is what torchrun launches)."""

from maskgit_cli.cli import main

if __name__ == "__main__":
    main()
