"""``python -m vae_bench`` (and ``torchrun -m vae_bench``) is the ``vae-bench`` command."""

import sys

from vae_bench.cli import main

sys.exit(main())
