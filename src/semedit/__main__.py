"""`python -m semedit ...` is the `semedit` command."""

import sys

from semedit.cli import main

sys.exit(main())
