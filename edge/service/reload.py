"""SIGHUP: the agent re-reads its config and applies what can change while it runs.

Applied live, between two frames (a LoopHook, in the loop's thread): `reuse` (enabled and its settings; the
remembered frame is forgotten), `max_slice_nums` (null: the bundle's) and `max_frames`. Every other key that
changed is logged, one line per key, as taking effect at the next restart. A config that does not load, or a slice
budget the bundle cannot take, is refused in one line and the config in use stays. `llm:` and `api:` are the LLM
process's and are left to it. The service manager hears
RELOADING=1, then READY=1.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any, Optional

from ..agent.config import AgentConfig, load_agent_config
from ..agent.frame_reuse import FrameReuse
from ..errors import InputError
from ..monitor.governor_hook import GovernorHook
from ..preprocess.preprocessor import slice_config
from .notify import Notifier

LIVE_KEYS = ("reuse", "max_slice_nums", "max_frames", "governor")
OTHERS_KEYS = ("llm", "api")  # the LLM process's: it reads them when it starts
log = logging.getLogger("minicpmv-edge")


class ConfigReloader:
    """Reloads `path` (whose settings in use are `config`) at the first loop turn after `request()`."""

    def __init__(self, path: Path, config: AgentConfig, notifier: Optional[Notifier] = None) -> None:
        self.path, self.config = Path(path), config
        self.notifier = notifier or Notifier()
        self._wanted = threading.Event()

    def request(self) -> None:
        """Ask for a reload (safe from a signal handler: it only sets a flag)."""
        self._wanted.set()

    def tick(self, pipeline: Any) -> None:
        if self._wanted.is_set():
            self._wanted.clear()
            self.reload(pipeline)

    def reload(self, pipeline: Any) -> None:
        """Read the config again and apply it to `pipeline`, or refuse it and keep the one in use."""
        self.notifier.reloading()
        try:
            new = load_agent_config(self.path)
            self._apply(new, pipeline)
        except InputError as exc:
            log.error("reload refused, the config in use stays: %s", exc)
        self.notifier.ready("running")

    def _apply(self, new: AgentConfig, pipeline: Any) -> None:
        old = self.config
        governing = next((hook for hook in pipeline.hooks if isinstance(hook, GovernorHook)), None)
        if new.governor.enabled != old.governor.enabled:
            raise InputError("%s: governor.enabled changed: switching the governor on or off takes a restart of the "
                             "agent (its policy values reload live)" % self.path)
        if new.max_slice_nums != old.max_slice_nums:
            encoder = pipeline.encoder
            value = new.max_slice_nums or slice_config(encoder.bundle).max_slice_nums
            try:
                encoder.max_slice_nums = value
            except ValueError as exc:
                raise InputError("%s: %s" % (self.path, exc)) from None
            if governing is not None:  # the governor's cap stays on top of the new ceiling
                governing.base_max_slices = value
                governing.apply(pipeline)
            log.info("reload: max_slice_nums is now %d", value)
        if governing is not None and new.governor != old.governor:
            governing.governor.policy = new.governor
            log.info("reload: the governor's policies are now those of %s (levels kept; the next reading decides)",
                     self.path)
        if new.reuse != old.reuse:
            pipeline.reuse = FrameReuse.from_dict(new.reuse.settings) if new.reuse.enabled else None
            log.info("reload: reuse is now %s", "on %s" % (new.reuse.settings or "(defaults)")
                     if new.reuse.enabled else "off")
        if new.max_frames != old.max_frames:
            pipeline.max_frames = new.max_frames
            log.info("reload: max_frames is now %s", new.max_frames)
        kept = {}
        for item in dataclasses.fields(AgentConfig):
            key = item.name
            if key not in LIVE_KEYS + OTHERS_KEYS and getattr(new, key) != getattr(old, key):
                kept[key] = getattr(old, key)
                log.warning("reload: %s changed: it takes effect when the agent restarts", key)
        self.config = dataclasses.replace(new, **kept)
