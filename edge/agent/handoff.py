"""A hand-off slot between two stages of the pipelined frame loop: one item at a time, and the giver waits until the
taker has it, so a stage never runs ahead of the next by more than the frame it is working on."""
from __future__ import annotations

import threading
from typing import Any, Optional

END = object()  # the last item through a slot: the stage before has ended
_EMPTY = object()


class Handoff:
    """`give` puts one item in the slot and returns once `take` has it (False if the slot was closed first); `take`
    returns the item, None when none came within its timeout, or END once the slot is closed and empty."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._item: Any = _EMPTY
        self._given = self._taken = 0
        self._closed = False

    def give(self, item: Any) -> bool:
        """Hand `item` to the taker and wait until it took it; False (not taken) once the slot is closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._item is _EMPTY or self._closed)
            if self._closed:
                return False
            self._item, self._given = item, self._given + 1
            ticket = self._given
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._taken >= ticket or self._closed)
            return self._taken >= ticket

    def take(self, timeout: Optional[float] = None) -> Any:
        """The item given, None after `timeout` seconds without one (None: wait as long as it takes), END once
        closed."""
        with self._changed:
            self._changed.wait_for(lambda: self._item is not _EMPTY or self._closed, timeout)
            if self._item is _EMPTY:
                return END if self._closed else None
            item, self._item, self._taken = self._item, _EMPTY, self._taken + 1
            self._changed.notify_all()
            return item

    def close(self) -> None:
        """Refuse further items and wake both sides: a waiting giver gets False, a taker END once the slot is
        empty."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
