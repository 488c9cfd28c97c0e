"""``python -m donjon``."""

from donjon.cli.main import run

run()
