"""``python -m dnmf.distributed`` and ``torchrun -m dnmf.distributed``: see ``_cli.main``."""

import sys

from dnmf.distributed._cli import main

sys.exit(main())
