"""``python -m vramguard``: the same as the ``vramguard`` command."""

from __future__ import annotations

import sys

from vramguard.cli import main

if __name__ == "__main__":
    sys.exit(main())
