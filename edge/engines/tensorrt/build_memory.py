"""Whether an engine build fits in the RAM the box has left (on a Jetson the GPU's memory is that RAM): refused
before the builder starts, rather than failing deep in it or pushing the LLM out of memory.

What a build holds, counted on the high side: the WORKSPACE limit it is given, plus twice the graph's bytes (the
parsed network's weights and the serialized engine being written). What the box has: total RAM less used, the
memory the kernel can hand out (free, buffers and page cache); a snapshot that cannot tell is not checked.
"""
from __future__ import annotations

from typing import Optional

from ...errors import InputError
from ...monitor.snapshot import Snapshot

MIB = 1 << 20


def build_needs_bytes(workspace_bytes: int, graph_bytes: int) -> int:
    """RAM a build of a graph of `graph_bytes` with a WORKSPACE limit of `workspace_bytes` may hold."""
    return workspace_bytes + 2 * graph_bytes


def available_bytes(snapshot: Snapshot) -> Optional[int]:
    """RAM the box can still hand out: total less used (free alone where only that is known), None if unknown."""
    if snapshot.degraded:
        return None
    if snapshot.ram_total_kb is not None and snapshot.ram_used_kb is not None:
        return (snapshot.ram_total_kb - snapshot.ram_used_kb) * 1024
    return None if snapshot.ram_free_kb is None else snapshot.ram_free_kb * 1024


def check_build_fits(what: str, needed_bytes: int, snapshot: Optional[Snapshot]) -> None:
    """Refuse to build `what` when `snapshot` shows less RAM available than `needed_bytes`; no snapshot, or one that
    cannot tell, passes."""
    free = None if snapshot is None else available_bytes(snapshot)
    if free is not None and free < needed_bytes:
        raise InputError("not building the %s engine: it needs about %d MiB of RAM and %d MiB are free: stop what "
                         "holds memory (the LLM process), build with a smaller --memPoolSize, or build on a fresh "
                         "boot" % (what, needed_bytes // MIB, free // MIB))
