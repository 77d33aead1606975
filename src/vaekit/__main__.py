"""``python -m vaekit`` runs the command line."""

from .cli import main

main()
