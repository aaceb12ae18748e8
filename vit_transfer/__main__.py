"""``python -m vit_transfer`` and ``accelerate launch -m vit_transfer``: the same CLI."""

import sys

from .cli import main

sys.exit(main())
