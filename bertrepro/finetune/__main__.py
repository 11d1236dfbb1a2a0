"""``python -m bertrepro.finetune``: see :mod:`bertrepro.finetune.cli`."""
from .cli import main

main()
