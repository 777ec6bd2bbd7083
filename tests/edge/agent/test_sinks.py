"""SinkSet: every sink gets every result, even when one of them fails; the failure is still raised (the frame loop
counts it) and closing closes them all."""
from __future__ import annotations

import numpy as np
import pytest

from edge.agent.contracts import FrameResult
from edge.agent.sinks import SinkSet


class Kept:
    def __init__(self, fail: bool = False) -> None:
        self.results, self.fail, self.closed = [], fail, False

    def describe(self) -> str:
        return "kept"

    def write(self, result: FrameResult) -> None:
        self.results.append(result.sequence)
        if self.fail:
            raise OSError("disk full")

    def close(self) -> None:
        self.closed = True


def test_every_sink_gets_the_result_and_the_failure_is_raised():
    failing, kept = Kept(fail=True), Kept()
    sinks = SinkSet([failing, kept])
    result = FrameResult(3, 1.0, None, np.zeros((1, 2, 4), np.float32), {})
    with pytest.raises(OSError, match="disk full"):
        sinks.write(result)
    assert failing.results == kept.results == [3]
    assert sinks.describe() == "kept and kept"
    sinks.close()
    assert failing.closed and kept.closed
