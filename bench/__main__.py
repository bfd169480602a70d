"""``python -m bench`` (and ``torchrun -m bench``) is the ``vae-bench`` command."""

import sys

from bench.cli import main

sys.exit(main())
