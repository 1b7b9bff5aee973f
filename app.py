"""`python app.py [flags]`: serve the playground at http://127.0.0.1:7860 (see --help)."""

import sys

from playground.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
