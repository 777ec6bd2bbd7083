"""Where the services' files go on a device, and the shipped unit files and snippets that name those places."""
from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Tuple

ETC_DIR = PurePosixPath("/etc/minicpmv-edge")
CONFIG = ETC_DIR / "agent.yaml"
STATE_DIR = PurePosixPath("/var/lib/minicpmv-edge")
BUNDLE_DIR = STATE_DIR / "bundle"
GGUF = STATE_DIR / "llm.gguf"
CACHE_DIR = PurePosixPath("/var/cache/minicpmv-edge")
RUNTIME_DIR = PurePosixPath("/run/minicpmv-edge")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
WANTS_DIR = UNIT_DIR / "multi-user.target.wants"
SYSUSERS = PurePosixPath("/etc/sysusers.d/minicpmv-edge.conf")
TMPFILES = PurePosixPath("/etc/tmpfiles.d/minicpmv-edge.conf")

BUILD_UNIT = "minicpmv-edge-build.service"
AGENT_UNIT = "minicpmv-edge-agent.service"
LLM_UNIT = "minicpmv-edge-llm.service"
UNITS = (BUILD_UNIT, AGENT_UNIT, LLM_UNIT)
# The program the shipped units start: a venv made with --system-site-packages (JetPack's tensorrt and cv2).
DEFAULT_PROGRAM = PurePosixPath("/opt/minicpmv-edge/venv/bin/minicpmv-edge")

# What the services may write (ProtectSystem=strict leaves the rest read-only) and what they cannot see at all.
WRITABLE: Tuple[PurePosixPath, ...] = (STATE_DIR, CACHE_DIR, RUNTIME_DIR)
HIDDEN: Tuple[PurePosixPath, ...] = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))

_SNIPPETS = {SYSUSERS: "minicpmv-edge.sysusers", TMPFILES: "minicpmv-edge.tmpfiles"}


def units_dir() -> Path:
    """The shipped unit files: systemd/ of a checkout, else where setup.py's data_files put them."""
    beside = Path(__file__).resolve().parents[2] / "systemd"
    if (beside / AGENT_UNIT).is_file():
        return beside
    return Path(sys.prefix) / "share" / "minicpmv-edge" / "systemd"


def unit_text(name: str, program: PurePosixPath) -> str:
    """Unit `name` as shipped, starting `program` instead of DEFAULT_PROGRAM."""
    return (units_dir() / name).read_text(encoding="utf-8").replace(str(DEFAULT_PROGRAM), str(program))


def snippets() -> Tuple[Tuple[PurePosixPath, bytes], ...]:
    """(where on the device, content) of the sysusers.d and tmpfiles.d snippets."""
    return tuple((target, (units_dir() / name).read_bytes()) for target, name in _SNIPPETS.items())


def under(path: PurePosixPath, folders: Tuple[PurePosixPath, ...]) -> bool:
    """Whether `path` is one of `folders` or inside one."""
    return any(path == folder or folder in path.parents for folder in folders)
