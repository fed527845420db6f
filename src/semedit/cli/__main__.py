"""`python -m semedit.cli ...` is the `semedit` command (DDP children and tests start it this way)."""

import sys

from semedit.cli import main

sys.exit(main())
