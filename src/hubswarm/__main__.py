"""``python -m hubswarm`` runs the command-line interface."""

from hubswarm.cli import main

if __name__ == "__main__":
    main()
