"""``python -m asyncloop``: the same as the `asyncloop` command."""

import sys

from ._cli import main

sys.exit(main())
