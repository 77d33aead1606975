"""``python -m vaekit`` runs the command line."""

from ._entry import main

main()
