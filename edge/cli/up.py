"""`minicpmv-edge up`: the agent (`run`) and the LLM process (`llm`) from one agent config, together in the
foreground as two child processes, until the agent ends or SIGINT/SIGTERM (docs/llm.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import InputError
from . import args as common
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    up = sub.add_parser("up", help="run the agent and the LLM process together (the config needs stream: and llm:); "
                                   "the LLM process is restarted if it dies")
    common.add_config(up)
    up.add_argument("--max-frames", type=common.positive_int, help="the agent stops after this many frames, and "
                                                                    "`up` with it (default: the config's)")
    return {"up": run_up}


def commands(config: Path, max_frames: Optional[int] = None) -> Dict[str, List[str]]:
    """The two children's command lines, run by this Python."""
    cli = [sys.executable, "-m", "edge.cli"]
    agent = cli + ["run", "--config", str(config)] + (["--max-frames", str(max_frames)] if max_frames else [])
    return {"agent": agent, "llm": cli + ["llm", "--config", str(config)]}


def run_up(args: argparse.Namespace) -> int:
    from ..agent.config import load_agent_config
    from ..service.children import Child, Console
    from ..service.up import Backoff, supervise

    config = load_agent_config(args.config)
    if config.llm is None:
        raise InputError("%s has no llm: section: add one with gguf: (see docs/agent-config.md)" % args.config)
    if not config.stream.enabled:
        raise InputError("%s: stream.enabled is not true: the LLM process reads the agent's token stream, set it"
                         % args.config)
    console = Console(sys.stdout)
    argv = commands(args.config, args.max_frames)
    return supervise(Child("agent", argv["agent"], console), Child("llm", argv["llm"], console), console, Backoff())
