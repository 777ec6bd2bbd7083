"""A fake Jetson root filesystem (what apply_binaries.sh leaves: etc/nv_tegra_release among the usual folders) and
a listing of a tree that shows any change."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Tuple

import pytest

R36_4 = ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, "
         "DATE: Fri Sep 13 04:36:44 UTC 2024\n")


@pytest.fixture
def rootfs(tmp_path) -> Path:
    root = tmp_path / "Linux_for_Tegra" / "rootfs"
    for folder in ("etc/systemd/system", "usr/lib/systemd/system", "var/lib", "opt"):
        (root / folder).mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(R36_4)
    return root


def listing(root: Path) -> Dict[str, Tuple]:
    """path -> (mode, owner, group, sha256 or link target, inode, mtime): a file rewritten, even with the same
    bytes, shows up as a new inode and mtime."""
    found = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = Path(folder) / name
            stat = path.lstat()
            if path.is_symlink():
                content = "-> " + os.readlink(str(path))
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = "folder"
            found[str(path.relative_to(root))] = (stat.st_mode, stat.st_uid, stat.st_gid, content, stat.st_ino,
                                                  stat.st_mtime_ns)
    return found


@pytest.fixture
def host_bundle(make_bundle, capsys) -> Path:
    """A tiny 2.6 bundle for the host (its making's output read away, so a test sees only its command's)."""
    made = make_bundle("2.6")
    capsys.readouterr()
    return made
