"""``python -m asyncloop``: the same as the `asyncloop` command."""

from ._cli import console_main

console_main()
