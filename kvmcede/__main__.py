"""``python -m kvmcede``: the command line (see :mod:`kvmcede.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
