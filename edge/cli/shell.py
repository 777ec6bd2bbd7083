"""What every CLI of the project shares: ``--version``, subcommands, and bad input as one line with exit code 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import InputError
from ..version import __version__

Handler = Callable[[argparse.Namespace], int]


def new_parser(prog: str, description: str) -> Tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A parser with ``--version`` and a required subcommand."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def run(parser: argparse.ArgumentParser, handlers: Dict[str, Handler], argv: Optional[List[str]]) -> int:
    """Parse `argv`, run the chosen handler; an InputError becomes one stderr line and exit code 2."""
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except InputError as exc:
        print("%s: error: %s" % (parser.prog, exc), file=sys.stderr)
        return 2
