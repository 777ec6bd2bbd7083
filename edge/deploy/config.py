"""The agent config as the services read it: the user's (or the shipped CSI example), pointed at the installed
bundle and GGUF, and refused when the sandboxed services could not use the paths it names."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

import yaml

from ..agent.config import AgentConfig, load_agent_config, parse_agent_config
from ..errors import InputError
from .layout import BUNDLE_DIR, CONFIG, GGUF, HIDDEN, WRITABLE, under

HEADER = ("# Written by minicpmv-edge from %s; the bundle and the GGUF point at their installed copies.\n"
          "# Every key: docs/agent-config.md. After an edit: systemctl restart minicpmv-edge-agent minicpmv-edge-llm\n")


@dataclass(frozen=True)
class InstalledConfig:
    """The YAML text to write to /etc/minicpmv-edge/agent.yaml, and whether it runs the LLM process."""

    text: bytes
    runs_llm: bool


def default_config() -> Path:
    """The shipped CSI example (configs/agent/csi.yaml), used when no --config is given."""
    beside = Path(__file__).resolve().parents[2] / "configs" / "agent" / "csi.yaml"
    spec = importlib.util.find_spec("configs")
    if beside.is_file() or spec is None or not spec.submodule_search_locations:
        return beside
    return Path(list(spec.submodule_search_locations)[0]) / "agent" / "csi.yaml"


def installed_config(source: Optional[Path], gguf: Optional[Path]) -> InstalledConfig:
    """The config at `source` (None: the CSI example) checked whole, with `bundle:` (and `llm.gguf:` when a GGUF is
    installed) set to the installed copies; an InputError names what the services could not use and the fix."""
    path = Path(source) if source is not None else default_config()
    load_agent_config(path)  # the user's file checked first, so that its errors name it
    data: Dict[str, Any] = dict(yaml.safe_load(path.read_text()))
    data["bundle"] = str(BUNDLE_DIR)
    if gguf is not None:
        data["llm"] = dict(data.get("llm") or {}, gguf=str(GGUF))
    config = parse_agent_config(data, Path(str(CONFIG.parent)))
    if config.llm is not None and not config.stream.enabled:
        raise InputError("%s: the LLM process reads the agent's token stream: set stream: {enabled: true} (or "
                         "leave out llm: and --llm)" % path)
    problem = _unusable_path(config)
    if problem:
        raise InputError("%s: %s" % (path, problem))
    text = HEADER % path.name + yaml.safe_dump(data, sort_keys=False)
    return InstalledConfig(text.encode("utf-8"), config.llm is not None)


def _paths(config: AgentConfig) -> Tuple[List[Tuple[str, Path]], List[Tuple[str, Path]]]:
    """(key, path) the services write to, and those they only read, as installed (relative ones resolved)."""
    writes = [("sink.directory", config.sink.directory), ("engine_cache", config.engine_cache)]
    reads = [("stream.secret_file", config.stream.secret_file), ("api.token_file", config.api.token_file)]
    if config.stream.address.path is not None:
        writes.append(("stream.socket", config.stream.address.path.parent))
    if config.llm is not None:
        reads.append(("llm.gguf", config.llm.gguf))
        if config.llm.schedule is not None:
            writes.append(("llm.schedule.answers_file", config.llm.schedule.answers_file))
    if config.camera.path:
        reads.append(("camera.path", Path(config.camera.path)))
    return [(k, p) for k, p in writes if p is not None], [(k, p) for k, p in reads if p is not None]


def _unusable_path(config: AgentConfig) -> Optional[str]:
    """The first path the hardened services could not use, as a sentence with the fix; None when all can be."""
    writes, reads = _paths(config)
    for key, path in writes:
        if not under(PurePosixPath(path), WRITABLE):
            return ("%s is %s, which the service may not write (ProtectSystem=strict): put it under %s (relative "
                    "paths are taken from %s)" % (key, path, ", ".join(map(str, WRITABLE)), CONFIG.parent))
    for key, path in reads:
        if under(PurePosixPath(path), HIDDEN):
            return ("%s is %s, which the service cannot see (ProtectHome=yes): move it, e.g. under /etc/minicpmv-edge"
                    % (key, path))
    return None
