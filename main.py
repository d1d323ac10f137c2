"""Entry point: ``python main.py [command]``. It only parses arguments and dispatches.

Commands are implemented in ``cli/``; the contract is in the README's "Commands" and in
docs/architecture.md, "Command line".
"""

from __future__ import annotations

import sys

from cli.app import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
