"""``python -m rtforge``."""

from rtforge.cli import run

run()
