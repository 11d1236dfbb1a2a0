"""``python -m bertrepro.finetune``: see :mod:`bertrepro.finetune.cli`."""
import sys

from .cli import main

sys.exit(main())
