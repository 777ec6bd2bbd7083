"""`minicpmv-edge install` (on a device: files in place, then systemd) and `flash-overlay` (the same files into a
Jetson root filesystem before flashing, nothing run inside it); docs/systemd.md."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Dict, List, Tuple

from ..bundle.manifest import Bundle
from ..deploy import checks
from ..deploy.config import installed_config
from ..deploy.files import Entry, apply, changes, on_host
from ..deploy.layout import DEFAULT_PROGRAM, SYSUSERS, TMPFILES
from ..deploy.plan import device_entries, enabled_units
from ..device.profiles import load_profile
from ..errors import InputError
from .shell import Handler


def register(sub: argparse._SubParsersAction) -> Dict[str, Handler]:
    install = sub.add_parser("install", help="install the systemd services on this device: units, config, bundle "
                                             "(and GGUF), then enable and start them; a second run changes nothing")
    _common(install)
    install.add_argument("--program", type=Path, help="the minicpmv-edge the services run (default: the one beside "
                                                      "this Python, %s)" % _own_program())
    install.add_argument("--root", type=Path, help="write into this folder instead of / and run nothing (tests)")
    install.add_argument("--dry-run", action="store_true", help="print what would change and run; change nothing")
    overlay = sub.add_parser("flash-overlay", help="write the services (units, config, bundle, GGUF, enabled "
                                                   "units, user) into a Jetson root filesystem before flashing")
    overlay.add_argument("--rootfs", required=True, type=Path, help="Linux_for_Tegra/rootfs, after apply_binaries.sh")
    overlay.add_argument("--device", required=True, help="the device profile (configs/devices/) the image is for")
    _common(overlay)
    overlay.add_argument("--program", type=PurePosixPath, default=DEFAULT_PROGRAM,
                         help="the minicpmv-edge the services run, as a path on the device (default %s)"
                              % DEFAULT_PROGRAM)
    return {"install": run_install, "flash-overlay": run_overlay}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, type=Path, help="the bundle to install (minicpmv-convert's)")
    parser.add_argument("--config", type=Path, help="the agent config (default: configs/agent/csi.yaml, a CSI "
                                                    "camera); its bundle and llm.gguf are pointed at the copies")
    parser.add_argument("--llm", type=Path, metavar="GGUF", help="the LLM's GGUF; installs and enables the LLM "
                                                                  "process (the config's llm: settings kept)")


def _own_program() -> Path:
    return Path(sys.executable).parent / "minicpmv-edge"


def _is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with GGUF's magic."""
    if not path.is_file():
        return False
    with open(str(path), "rb") as handle:
        return handle.read(4) == b"GGUF"


def _entries(args: argparse.Namespace, program: PurePosixPath) -> Tuple[List[Entry], List[str]]:
    """The files to write and the units to enable, after the checks every command shares."""
    if args.llm is not None and not _is_gguf(args.llm):
        raise InputError("--llm %s is not a GGUF file: pass the LLM as GGUF (minicpmv-convert make-gguf makes a "
                         "tiny one)" % args.llm)
    bundle = Bundle.load(args.bundle)
    config = installed_config(args.config, args.llm)
    return device_entries(bundle.path, config, args.llm, program), enabled_units(config.runs_llm)


def run_overlay(args: argparse.Namespace) -> int:
    if not args.program.is_absolute():
        raise InputError("--program %s: give the path on the device from /, such as %s" % (args.program,
                                                                                          DEFAULT_PROGRAM))
    profile = load_profile(args.device)
    release = checks.rootfs_release(args.rootfs)
    checks.check_bundle_for(Bundle.load(args.bundle, verify=False), profile, release, args.rootfs)
    checks.check_writable(args.rootfs, "run flash-overlay with sudo, as apply_binaries.sh")
    entries, _ = _entries(args, args.program)
    _report(apply(entries, args.rootfs), "")
    if not on_host(args.rootfs, args.program).exists():
        print("note: %s is not in the rootfs yet: install minicpmv-edge there before the first boot "
              "(docs/systemd.md)" % args.program, file=sys.stderr)
    return 0


def run_install(args: argparse.Namespace) -> int:
    root = args.root or Path("/")
    if not root.is_dir():
        raise InputError("--root %s is not a folder: create it first" % root)
    program = Path(os.path.abspath(str(args.program or _own_program())))  # ExecStart= needs a path from /
    checks.check_program(PurePosixPath(program), program)
    release = checks.device_release(root)
    bundle = Bundle.load(args.bundle, verify=False)
    if release is not None and bundle.target.l4t is not None:
        checks.check_release(release, bundle.target.l4t, root / "etc" / "nv_tegra_release")
    if not args.dry_run:
        checks.check_writable(root, "run install as root (sudo)")
    entries, units = _entries(args, PurePosixPath(program))
    if args.dry_run:
        pending = changes(entries, root)
        _report(pending, "would write ")
        if args.root is None:
            print("\n".join("would run: " + " ".join(c) for c in _systemd_commands(units, bool(pending))))
        return 0
    done = apply(entries, root)
    _report(done, "")
    if args.root is not None:
        print("ran nothing (--root): on a device install runs systemd-sysusers, systemd-tmpfiles and systemctl")
        return 0
    return _run(_systemd_commands(units, bool(done)))


def _systemd_commands(units: List[str], changed: bool) -> List[List[str]]:
    """The user and folders, a reload, then the units enabled and started (restarted when files changed)."""
    return [["systemd-sysusers", str(SYSUSERS)], ["systemd-tmpfiles", "--create", str(TMPFILES)],
            ["systemctl", "daemon-reload"], ["systemctl", "enable"] + units,
            ["systemctl", "restart" if changed else "start"] + units]


def _run(commands: List[List[str]]) -> int:
    """Run each command in turn; 1 at the first that fails."""
    for command in commands:
        print("running: " + " ".join(command), flush=True)
        code = subprocess.call(command)
        if code != 0:
            print("%s failed (exit %d): see journalctl -u minicpmv-edge-agent" % (" ".join(command), code),
                  file=sys.stderr)
            return 1
    return 0


def _report(lines: List[str], prefix: str) -> None:
    """Each change on a line, or one line saying there is none."""
    print("\n".join(prefix + line for line in lines) if lines else "nothing to change: every file is as wanted")
