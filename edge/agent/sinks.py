"""Sinks for frame results: the tokens as .npy files (`run`), or nowhere (`profile`), or to several sinks at once
(the files and the token stream)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..errors import InputError
from ..fsutil import atomic_write_npy
from .contracts import FrameResult, Sink


class NpySink:
    """The tokens of each handled frame (encoded or reused) as `frame-<sequence>.npy` in a folder, keeping the
    newest `keep` files."""

    name = "npy"

    def __init__(self, directory: Path, keep: int = 100) -> None:
        self.directory, self.keep = Path(directory), int(keep)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError("sink.directory: cannot create %s (%s): set sink.directory to a folder the agent's "
                             "user can write" % (self.directory, exc.strerror or exc)) from exc
        self.written: List[Path] = []
        self.count = 0

    def describe(self) -> str:
        return "npy files in %s (the newest %d kept)" % (self.directory, self.keep)

    def write(self, result: FrameResult) -> None:
        path = self.directory / ("frame-%08d.npy" % result.sequence)
        atomic_write_npy(path, result.tokens)
        self.count += 1
        self.written.append(path)
        while len(self.written) > self.keep:
            self.written.pop(0).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing is held open between frames."""

    def stats(self) -> Dict[str, Any]:
        return {"written": self.count, "kept": len(self.written)}


class NullSink:
    """Takes every result and keeps none: `profile` measures the pipeline without writing tokens."""

    name = "none"

    def describe(self) -> str:
        return "no tokens written (profile)"

    def write(self, result: FrameResult) -> None:
        """Drop `result`."""

    def close(self) -> None:
        """Nothing to let go."""

    def stats(self) -> Dict[str, Any]:
        return {}


class SinkSet:
    """Several sinks as one: each result goes to every sink, even when one of them fails (its error is raised
    after the others have the result); its stats are theirs, by sink kind."""

    name = "sinks"

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def describe(self) -> str:
        return " and ".join(sink.describe() for sink in self.sinks)

    def write(self, result: FrameResult) -> None:
        failed: Optional[Exception] = None
        for sink in self.sinks:
            try:
                sink.write(result)
            except Exception as exc:  # noqa: BLE001 - the other sinks still get the frame; raised below
                failed = failed or exc
        if failed is not None:
            raise failed

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def stats(self) -> Dict[str, Any]:
        return {sink.name: sink.stats() for sink in self.sinks}
