"""`python -m distill.cli ...` is the `distillery` command (for launchers such as torchrun or
`accelerate launch -m distill.cli grpo --config R`)."""

import sys

from distill.cli import main

sys.exit(main())
