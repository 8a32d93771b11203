"""`python -m skypost`: the same command line as the `skypost` script."""

from skypost.cli import main

main(prog_name="skypost")
