"""``python -m generator``: the same as ``tabvm check`` / ``tabvm gen``."""

import sys

from tabvm.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
