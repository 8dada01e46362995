"""``python -m landmarks``: the command line of :mod:`landmarks.cli`."""
import sys

from landmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
