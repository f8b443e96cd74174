"""What the bench's tests share: the ``asyncloop bench`` parser."""

from __future__ import annotations

import argparse

from asyncloop._cli_bench import register


def parse(argv: list[str]) -> argparse.Namespace:
    """``asyncloop bench ARGV`` parsed as the CLI parses it (values still unchecked)."""
    parser = argparse.ArgumentParser(prog="asyncloop")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])
