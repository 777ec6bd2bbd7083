"""Short socket folders (a Unix socket path has at most 107 bytes; pytest's tmp_path can be longer)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mcv-", dir="/tmp"))
    yield path
    shutil.rmtree(str(path), ignore_errors=True)
