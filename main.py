"""Entry point: ``python main.py [command]``. It only parses arguments and dispatches.

Commands are implemented in ``cli/``; see DESIGN.md section 7 for the contract.
"""

from __future__ import annotations

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
