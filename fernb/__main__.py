"""Entry point of ``python -m fernb``."""

import sys

from fernb.cli import main

sys.exit(main())
