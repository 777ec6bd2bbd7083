"""What every CLI of the project shares: ``--version``, subcommands, and how a run ends.

- bad input (an InputError): one line on stderr naming the problem and the fix, exit code 2;
- Ctrl-C or SIGTERM: work in progress is abandoned through the normal unwinding (temporary files and staging
  directories are removed on the way out), one line says so, exit code 130 or 143 (128 + the signal);
- a reader that closes the pipe early (``| head``): no traceback, exit code 141, as ``yes | head`` gives.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple

from ..errors import InputError
from ..version import __version__

Handler = Callable[[argparse.Namespace], int]


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (cleaning up on the way) and exit with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (naming the flag and where the help is) with exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def new_parser(prog: str, description: str) -> Tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A parser with ``--version`` and a required subcommand (subcommand parsers are OneLineParsers too)."""
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def run(parser: argparse.ArgumentParser, handlers: Dict[str, Handler], argv: Optional[List[str]]) -> int:
    """Parse `argv` and run the chosen handler, ending as the module docstring says."""
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set signal handlers
    signals = (signal.SIGINT, signal.SIGTERM) if main_thread else ()
    received: List[int] = []

    def interrupt(signum: int, frame: Any) -> None:
        received.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, interrupt) for s in signals}
    try:
        return handlers[args.command](args)
    except InputError as exc:
        print("%s: error: %s" % (parser.prog, exc), file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        return _stopped(parser.prog, exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    except BrokenPipeError:
        # The reader went away: send what is still buffered nowhere, so that the exit flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + int(signal.SIGPIPE)
    except Exception:
        if not received:
            raise
        # The signal's exception came out as another one: a C extension whose import it interrupted reports an
        # ImportError ("initialization failed"), for example. The unwinding has cleaned up all the same.
        return _stopped(parser.prog, received[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(prog: str, signum: int) -> int:
    """The line for a run stopped by a signal, and its exit code."""
    print("%s: stopped by %s; nothing half-written was left" % (prog, signal.Signals(signum).name), file=sys.stderr)
    return 128 + int(signum)
