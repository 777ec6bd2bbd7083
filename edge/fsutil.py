"""Files written whole or not at all, and sha256 of files."""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

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
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("cannot write %s: directory %s does not exist" % (path, path.parent))
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from the service user that reads it
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


@contextlib.contextmanager
def atomic_directory(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it is renamed to `target`, on error removed.

    An existing `target` is an InputError unless `overwrite` is set (then it is replaced only on success).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise InputError("%s already exists: choose another --out or pass --force to replace it" % target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="." + target.name + ".", dir=str(target.parent)))
    os.chmod(str(tmp), 0o755)  # mkdtemp's 0700 would hide the result from the service user that reads it
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix="." + target.name + ".old.", dir=str(target.parent)))
            os.replace(str(target), str(old / target.name))
            shutil.rmtree(str(old))
        os.replace(str(tmp), str(target))
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise
