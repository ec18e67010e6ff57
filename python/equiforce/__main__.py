"""``python -m equiforce`` runs the command-line interface (the same as the ``equiforce`` command)."""
import sys

from .cli import main

sys.exit(main())
