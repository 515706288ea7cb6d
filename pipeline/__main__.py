"""``python -m pipeline`` (and so ``accelerate launch -m pipeline``) runs the CLI."""
import sys

from pipeline.cli import main

sys.exit(main())
