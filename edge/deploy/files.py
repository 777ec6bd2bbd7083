"""What a device gets, as a list of entries (files, folders, symlinks, the bundle tree), and applying it to a root
folder: each entry is written only when it differs, each file whole or not at all, so a second run changes nothing."""
from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import List, Optional, Sequence, Union

from ..fsutil import atomic_directory, atomic_file


def on_host(root: Path, path: PurePosixPath) -> Path:
    """Where device path `path` lies under `root`."""
    return Path(root) / path.relative_to("/")


def _mode(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


@dataclass(frozen=True)
class Folder:
    """A folder with this mode."""

    path: PurePosixPath
    mode: int

    def change(self, root: Path) -> Optional[str]:
        host = on_host(root, self.path)
        if host.is_dir() and not host.is_symlink() and _mode(host) == self.mode:
            return None
        return "folder %s (%04o)" % (self.path, self.mode)

    def write(self, root: Path) -> None:
        host = on_host(root, self.path)
        host.mkdir(parents=True, exist_ok=True)
        os.chmod(str(host), self.mode)


@dataclass(frozen=True)
class File:
    """A file with this content (`data`, or a copy of `source`) and mode."""

    path: PurePosixPath
    mode: int
    data: Optional[bytes] = None
    source: Optional[Path] = None

    def _same(self, host: Path) -> bool:
        if host.is_symlink() or not host.is_file() or _mode(host) != self.mode:
            return False
        if self.source is not None:
            return filecmp.cmp(str(self.source), str(host), shallow=False)
        return host.stat().st_size == len(self.data or b"") and host.read_bytes() == self.data

    def change(self, root: Path) -> Optional[str]:
        if self._same(on_host(root, self.path)):
            return None
        return "file %s (%04o)%s" % (self.path, self.mode, "" if self.source is None else " from %s" % self.source)

    def write(self, root: Path) -> None:
        host = on_host(root, self.path)
        host.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(host, self.mode) as tmp:
            if self.source is not None:
                shutil.copyfile(str(self.source), str(tmp))
            else:
                tmp.write_bytes(self.data or b"")


@dataclass(frozen=True)
class Link:
    """A symlink to `target` (what `systemctl enable` makes in a .wants folder)."""

    path: PurePosixPath
    target: str

    def change(self, root: Path) -> Optional[str]:
        host = on_host(root, self.path)
        if host.is_symlink() and os.readlink(str(host)) == self.target:
            return None
        return "link %s -> %s" % (self.path, self.target)

    def write(self, root: Path) -> None:
        host = on_host(root, self.path)
        host.parent.mkdir(parents=True, exist_ok=True)
        tmp = host.with_name(".%s.%d" % (host.name, os.getpid()))
        os.symlink(self.target, str(tmp))
        os.replace(str(tmp), str(host))


@dataclass(frozen=True)
class Absent:
    """Nothing at this path (a unit no longer enabled)."""

    path: PurePosixPath

    def change(self, root: Path) -> Optional[str]:
        return "remove %s" % self.path if os.path.lexists(str(on_host(root, self.path))) else None

    def write(self, root: Path) -> None:
        on_host(root, self.path).unlink()


@dataclass(frozen=True)
class Tree:
    """A copy of folder `source` (the bundle), replaced as a whole when any file differs."""

    path: PurePosixPath
    source: Path

    def change(self, root: Path) -> Optional[str]:
        host = on_host(root, self.path)
        if host.is_dir() and _same_tree(self.source, host):
            return None
        return "folder %s copied from %s" % (self.path, self.source)

    def write(self, root: Path) -> None:
        host = on_host(root, self.path)
        host.parent.mkdir(parents=True, exist_ok=True)
        with atomic_directory(host, overwrite=True) as staging:
            shutil.copytree(str(self.source), str(staging), dirs_exist_ok=True)


Entry = Union[Folder, File, Link, Absent, Tree]


def _same_tree(left: Path, right: Path) -> bool:
    """Whether two folders hold the same names, contents and modes."""
    compared = filecmp.dircmp(str(left), str(right))
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    for name in compared.common_files:
        a, b = left / name, right / name
        if _mode(a) != _mode(b) or not filecmp.cmp(str(a), str(b), shallow=False):
            return False
    return all(_same_tree(left / name, right / name) for name in compared.common_dirs)


def changes(entries: Sequence[Entry], root: Path) -> List[str]:
    """What applying `entries` under `root` would change, one line each."""
    return [line for line in (entry.change(root) for entry in entries) if line is not None]


def apply(entries: Sequence[Entry], root: Path) -> List[str]:
    """Write every entry that differs under `root`, in order; the lines of what changed."""
    done = []
    for entry in entries:
        line = entry.change(root)
        if line is not None:
            entry.write(root)
            done.append(line)
    return done
