"""Where built engines live: one file per key of everything that makes an engine unportable (docs/tensorrt.md)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from ...fsutil import atomic_write_bytes

DEFAULT_CACHE_DIR = Path("/var/cache/minicpmv-edge/engines")  # writable by the service user (doctor checks it)
KEY_FIELDS = ("graph_sha256", "tensorrt", "compute_capability", "module", "l4t", "precision", "shapes",
              "dla_core", "workspace_bytes", "optimization_level")


def cache_key(fields: Dict[str, Any]) -> str:
    """A short digest of the key fields (all must be given, None where not applicable)."""
    missing = [f for f in KEY_FIELDS if f not in fields]
    if missing:
        raise ValueError("engine cache key lacks %s" % ", ".join(missing))
    canonical = json.dumps({f: fields[f] for f in KEY_FIELDS}, sort_keys=True, default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class EngineCache:
    """A directory of `<module>-<precision>-<key>.engine` files, each with a `.json` of its key fields."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, fields: Dict[str, Any]) -> Path:
        return self.directory / ("%s-%s-%s.engine" % (fields["graph_module"], fields["precision"],
                                                       cache_key(fields)))

    def load(self, fields: Dict[str, Any]) -> Optional[bytes]:
        path = self.path(fields)
        return path.read_bytes() if path.is_file() else None

    def store(self, fields: Dict[str, Any], engine: bytes) -> Path:
        """Write engine and key atomically (the key file last: a reader trusts an engine only with its key)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(fields)
        atomic_write_bytes(path, engine)
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(fields, indent=2, sort_keys=True,
                                                                 default=list).encode())
        return path

    def remove(self, fields: Dict[str, Any]) -> None:
        """Drop an entry (an engine that failed its check), key file first."""
        path = self.path(fields)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
