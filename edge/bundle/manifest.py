"""A bundle on disk: ``manifest.yaml`` plus ONNX graphs per precision, every file checked by sha256 on load."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..errors import InputError
from ..fsutil import atomic_write_text, sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.yaml"
MODULES = ("vpm", "resampler")


def write_manifest(bundle_dir: Path, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Add the sha256 and size of every file the graphs name, then write manifest.yaml atomically."""
    files: Dict[str, Dict[str, Any]] = {}
    for module in manifest["modules"].values():
        for graph in module["graphs"].values():
            for relative in graph["files"]:
                path = Path(bundle_dir) / relative
                files[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = dict(manifest, schema_version=SCHEMA_VERSION, files=files)
    atomic_write_text(Path(bundle_dir) / MANIFEST, yaml.safe_dump(manifest, sort_keys=False))
    return manifest


class Bundle:
    """A loaded bundle: its manifest and the paths of its graphs."""

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> Bundle:
        """Read manifest.yaml; with `verify`, check every listed file's sha256 (external data included)."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise InputError("%s is not a bundle (no %s): pass the directory written by minicpmv-convert export"
                             % (path, MANIFEST))
        try:
            manifest = yaml.safe_load(manifest_path.read_text())
        except yaml.YAMLError as exc:
            raise InputError("%s is not valid YAML (%s): re-run minicpmv-convert export"
                             % (manifest_path, str(exc).splitlines()[0])) from exc
        if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
            found = manifest.get("schema_version") if isinstance(manifest, dict) else None
            raise InputError("%s has schema version %r, this program reads %d: re-export the bundle with this "
                             "version of minicpmv-convert" % (manifest_path, found, SCHEMA_VERSION))
        bundle = cls(path, manifest)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check every file of the manifest: present, and with the recorded sha256."""
        for relative, entry in self.manifest.get("files", {}).items():
            file = self.path / relative
            if not file.is_file():
                raise InputError("bundle file %s is missing from %s: re-run minicpmv-convert export"
                                 % (relative, self.path))
            if sha256_file(file) != entry["sha256"]:
                raise InputError("bundle file %s does not match its sha256 in %s (changed or corrupt): "
                                 "re-run minicpmv-convert export or copy the bundle again" % (relative, MANIFEST))

    @property
    def model(self) -> Dict[str, Any]:
        return self.manifest["model"]

    def precisions(self, module: str) -> List[str]:
        return list(self.manifest["modules"][module]["graphs"])

    def graph(self, module: str, precision: Optional[str] = None) -> Dict[str, Any]:
        """The manifest entry of one graph; precision None = the target's default, else the best there is."""
        graphs = self.manifest["modules"][module]["graphs"]
        if precision is None:
            default = self.manifest["target"]["default_precision"]
            precision = default if default in graphs else next(iter(graphs))
        if precision not in graphs:
            raise InputError("bundle %s has no %s graph for %s (it has %s): export it with --precision %s"
                             % (self.path, precision, module, ", ".join(graphs), precision))
        return graphs[precision]

    def graph_path(self, module: str, precision: Optional[str] = None) -> Path:
        return self.path / self.graph(module, precision)["files"][0]
