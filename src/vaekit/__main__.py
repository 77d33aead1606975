"""``python -m vaekit`` runs the command line."""

from ._entry import main

if __name__ == "__main__":  # importing the module (help(), inspect) runs nothing
    main()
