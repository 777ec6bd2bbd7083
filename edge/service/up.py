"""`up`: the agent and the LLM process as two supervised children. The LLM process is restarted with backoff when
it dies (the agent keeps running); when the agent ends, the LLM process is stopped and its exit code is `up`'s."""
from __future__ import annotations

import signal
import threading
import time

from .children import Child, Console

BAD_INPUT = 2  # the CLI's exit code for bad input: restarting would fail the same way


class Backoff:
    """Waits of `initial_s`, doubled after each failure up to `max_s`; back to `initial_s` after a run of
    `healthy_s` or more."""

    def __init__(self, initial_s: float = 1.0, max_s: float = 30.0, healthy_s: float = 60.0) -> None:
        self.initial_s, self.max_s, self.healthy_s = initial_s, max_s, healthy_s
        self.next_s = initial_s

    def after(self, ran_s: float) -> float:
        """The wait before the next start, for a child that ran `ran_s` seconds."""
        if ran_s >= self.healthy_s:
            self.next_s = self.initial_s
        wait_s, self.next_s = self.next_s, min(2 * self.next_s, self.max_s)
        return wait_s


def supervise(agent: Child, llm: Child, console: Console, backoff: Backoff, grace_s: float = 30.0,
              poll_s: float = 0.2) -> int:
    """Run both until the agent ends (its exit code) or the LLM process refuses its input (2); stop both on the
    way out, also when a signal unwinds this."""
    def say(line: str) -> None:
        console.say("up", line)

    restart_at = None
    try:
        agent.start()
        llm.start()
        while True:
            code = agent.poll()
            if code is not None:
                say("the agent ended with exit code %d: stopping the llm" % code)
                return code
            if restart_at is None:
                code = llm.poll()
                if code == BAD_INPUT:
                    say("the llm refused its input (exit code 2, its line above): stopping the agent")
                    return code
                if code is not None:
                    wait_s = backoff.after(time.monotonic() - llm.started_at)
                    say("the llm ended with exit code %d: restarting it in %.1f s (the agent keeps running)"
                        % (code, wait_s))
                    restart_at = time.monotonic() + wait_s
            elif time.monotonic() >= restart_at:
                llm.start()
                restart_at = None
            time.sleep(poll_s)
    finally:
        say("stopping the llm and the agent")
        _stop(llm, agent, grace_s)


def _stop(llm: Child, agent: Child, grace_s: float) -> None:
    """SIGTERM to both, then wait for both (SIGKILL after `grace_s`). A second SIGINT or SIGTERM meanwhile (`timeout`
    signals its process group too) is ignored rather than abandoning the children mid-stop; the caller's handlers
    come back when its command ends (edge.cli.shell)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    for child in (llm, agent):
        child.signal(signal.SIGTERM)
    for child in (llm, agent):
        child.wait(grace_s)
