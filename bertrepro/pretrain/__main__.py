"""``python -m bertrepro.pretrain``: see :mod:`bertrepro.pretrain.cli`."""
from .cli import main

main()
