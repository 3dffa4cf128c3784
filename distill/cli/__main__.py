"""`python -m distill.cli ...` = `distillery ...` (what `accelerate launch -m` runs per process)."""

import sys

from distill.cli import main

sys.exit(main())
