"""Files written whole or not at all, and sha256 of files."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, List

from .errors import InputError


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (external data files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name; on success it gets `mode` and is
    renamed over `path`, on error removed."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("cannot write %s: directory %s does not exist" % (path, path.parent))
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=str(path.parent))
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)  # mkstemp's 0600 would hide it from the service user that reads it
        os.replace(tmp, str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_npy(path: Path, array: Any) -> None:
    """np.save to `path`, whole or not at all."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True


def _staging_prefix(target: Path) -> str:
    return ".%s.staging-" % target.name


def remove_abandoned_staging(target: Path) -> List[Path]:
    """Remove the staging directories of `target` left by runs that were killed (their process is gone)."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.glob(_staging_prefix(target) + "*"):
        pid = entry.name[len(_staging_prefix(target)):].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(str(entry), ignore_errors=True)
            removed.append(entry)
    return removed


def refuse_existing(target: Path, overwrite: bool) -> None:
    """An InputError when `target` exists and may not be replaced (a command's --out without --force)."""
    if Path(target).exists() and not overwrite:
        raise InputError("%s already exists: choose another --out or pass --force to replace it" % target)


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging directory beside `target`; on success it is renamed to `target`, on error (an exception,
    Ctrl-C, SIGTERM through the CLI's handler) removed. A staging directory left by a run that was killed
    outright (SIGKILL, power loss) carries that run's pid in its name and is removed by the next run.

    An existing `target` is an InputError unless `overwrite` is set (then it is replaced only on success).
    """
    target = Path(target)
    refuse_existing(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(target)
    tmp = Path(tempfile.mkdtemp(prefix="%s%d-" % (_staging_prefix(target), os.getpid()), dir=str(target.parent)))
    os.chmod(str(tmp), 0o755)  # mkdtemp's 0700 would hide the result from the service user that reads it
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix="%s%d-old-" % (_staging_prefix(target), os.getpid()),
                                        dir=str(target.parent)))
            os.replace(str(target), str(old / target.name))
            shutil.rmtree(str(old))
        os.replace(str(tmp), str(target))
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise
