"""The entries a device gets: units, snippets, the agent config, the bundle, the GGUF and the enabled units."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import List, Optional

from . import layout
from .config import InstalledConfig
from .files import Absent, Entry, File, Folder, Link, Tree
from .layout import AGENT_UNIT, LLM_UNIT

UNIT_MODE = 0o644
# The config may hold a camera's password or name secret files: root and the services' group only (the group is
# set at boot by the tmpfiles.d snippet, once systemd-sysusers has made it).
CONFIG_MODE = 0o640
ETC_MODE = 0o750


def enabled_units(runs_llm: bool) -> List[str]:
    """The units started at boot: the agent (which pulls in the engine build), and the LLM process if configured."""
    return [AGENT_UNIT] + ([LLM_UNIT] if runs_llm else [])


def device_entries(bundle: Path, config: InstalledConfig, gguf: Optional[Path],
                   program: PurePosixPath) -> List[Entry]:
    """Everything install and flash-overlay write, in the order they write it."""
    entries: List[Entry] = [Folder(layout.ETC_DIR, ETC_MODE), Folder(layout.STATE_DIR, 0o750)]
    entries += [File(layout.UNIT_DIR / name, UNIT_MODE, data=layout.unit_text(name, program).encode())
                for name in layout.UNITS]
    entries += [File(target, UNIT_MODE, data=data) for target, data in layout.snippets()]
    entries += [File(layout.CONFIG, CONFIG_MODE, data=config.text), Tree(layout.BUNDLE_DIR, bundle)]
    if gguf is not None:
        entries.append(File(layout.GGUF, 0o644, source=gguf))
    enabled = enabled_units(config.runs_llm)
    for name in (AGENT_UNIT, LLM_UNIT):
        link = layout.WANTS_DIR / name
        entries.append(Link(link, str(layout.UNIT_DIR / name)) if name in enabled else Absent(link))
    return entries
