"""Is a file a GGUF? Its first four bytes say, before llama.cpp (or anything heavier) opens it."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

GGUF_MAGIC = b"GGUF"


def gguf_file_bytes(path: Path, flag: str, fix: str = "") -> int:
    """The size of GGUF file `path`; an InputError naming `flag` and the path for a missing or unreadable file, or
    one that does not start as a GGUF does (`fix` is appended to that message)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        why = "it does not exist" if isinstance(error, FileNotFoundError) else error.strerror or str(error)
        raise InputError("%s: cannot read %s (%s): pass a llama.cpp .gguf model file" % (flag, path, why)) from error
    if magic != GGUF_MAGIC:
        raise InputError("%s: %s is not a GGUF file (it starts with %r, not %r): pass a llama.cpp .gguf model%s"
                         % (flag, path, magic, GGUF_MAGIC, fix))
    return size
