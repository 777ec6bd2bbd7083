"""``minicpmv-edge``: the parser, assembled from one module per command, and the entry point."""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional, Tuple

from . import agent, bench, build, deploy, doctor, encode, inspect_bundle, llm, up
from .shell import Handler, new_parser, run

PROG = "minicpmv-edge"
COMMANDS = (inspect_bundle, encode, build, agent, doctor, bench, llm, up, deploy)


def parser() -> Tuple[argparse.ArgumentParser, Dict[str, Handler]]:
    top, sub = new_parser(PROG, "Run MiniCPM-V's vision half on a Jetson.")
    handlers: Dict[str, Handler] = {}
    for command in COMMANDS:
        handlers.update(command.register(sub))
    return top, handlers


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: see edge.cli.shell for how a run ends (exit codes 0, 1, 2, 130, 141, 143)."""
    top, handlers = parser()
    return run(top, handlers, argv)


if __name__ == "__main__":
    sys.exit(main())
