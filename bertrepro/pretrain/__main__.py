"""``python -m bertrepro.pretrain``: see :mod:`bertrepro.pretrain.cli`."""
import sys

from .cli import main

sys.exit(main())
