"""A bundle on disk: ``manifest.yaml`` plus ONNX graphs per precision, every file checked by sha256 on load.

Every path a manifest names must stay inside the bundle directory: a `files:` key such as ``../x`` or ``/etc/x``
is refused at load, so a bundle copied from elsewhere cannot make the device read (or hash) files outside it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..errors import InputError
from ..fsutil import atomic_write_text, sha256_file
from .facts import GraphEntry, ModelFacts, ModuleShapes, Reader, TargetFacts

SCHEMA_VERSION = 1
MANIFEST = "manifest.yaml"
MODULES = ("vpm", "resampler")
VIDEO_MODULE = "resampler_group"  # MiniCPM-V 4.5's grouped (video) Resampler: the manifest's optional `video:` entry


def write_manifest(bundle_dir: Path, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Add the sha256 and size of every file the graphs name (the modules', and the optional ``video`` entry's),
    then write manifest.yaml atomically."""
    files: Dict[str, Dict[str, Any]] = {}
    extra = [manifest["video"]] if "video" in manifest else []  # the optional grouped (video) Resampler graphs
    for module in list(manifest["modules"].values()) + extra:
        for graph in module["graphs"].values():
            for relative in graph["files"]:
                path = Path(bundle_dir) / relative
                files[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = dict(manifest, schema_version=SCHEMA_VERSION, files=files)
    atomic_write_text(Path(bundle_dir) / MANIFEST, yaml.safe_dump(manifest, sort_keys=False))
    return manifest


def inside(bundle_dir: Path, relative: str) -> Path:
    """`bundle_dir / relative`, refused unless it is a relative path that stays inside the bundle."""
    root = os.path.realpath(str(bundle_dir))
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.isabs(relative) or os.path.commonpath([root, target]) != root:
        raise InputError("%s names %r, a path outside the bundle directory %s: refusing to read it; re-export the "
                         "bundle with minicpmv-convert" % (MANIFEST, relative, bundle_dir))
    return Path(bundle_dir) / relative


class Bundle:
    """A loaded bundle: its manifest (as written), typed views of it (`model`, `target`, `shapes()`, `graph()`)
    and the paths of its graphs."""

    def __init__(self, path: Path, manifest: Dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        reader = Reader(manifest, str(self.path / MANIFEST))
        self.model = ModelFacts.read(reader)
        self.target = TargetFacts.read(reader)
        modules = reader.get("modules", dict)
        missing = [m for m in MODULES if m not in modules]
        if missing:
            raise InputError("%s lacks modules.%s: re-export the bundle with minicpmv-convert"
                             % (reader.where, missing[0]))
        self._shapes = {m: ModuleShapes.read(reader, m) for m in MODULES}
        self._graphs = {m: {p: GraphEntry.read(reader, m, p) for p in reader.get("modules.%s.graphs" % m, dict)}
                        for m in MODULES}
        if "video" in manifest:  # the grouped Resampler, addressed as module VIDEO_MODULE
            self._shapes[VIDEO_MODULE] = ModuleShapes.read(reader, VIDEO_MODULE, "video.shapes")
            self._graphs[VIDEO_MODULE] = {p: GraphEntry.read(reader, VIDEO_MODULE, p, "video.graphs")
                                          for p in reader.get("video.graphs", dict)}
        self.files: Dict[str, Dict[str, Any]] = dict(reader.get("files", dict, optional=True) or {})
        for relative in list(self.files) + [f for g in self._all_graphs() for f in g.files]:
            inside(self.path, relative)

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
        for relative, entry in self.files.items():
            file = inside(self.path, relative)
            if not file.is_file():
                raise InputError("bundle file %s is missing from %s: re-run minicpmv-convert export"
                                 % (relative, self.path))
            if sha256_file(file) != entry.get("sha256"):
                raise InputError("bundle file %s does not match its sha256 in %s (changed or corrupt): "
                                 "re-run minicpmv-convert export or copy the bundle again" % (relative, MANIFEST))

    def _all_graphs(self) -> List[GraphEntry]:
        return [g for graphs in self._graphs.values() for g in graphs.values()]

    @property
    def has_video(self) -> bool:
        """True when the bundle holds the grouped (video) Resampler graph (minicpmv-convert export-video)."""
        return bool(self._graphs.get(VIDEO_MODULE))

    def precisions(self, module: str) -> List[str]:
        return list(self._graphs.get(module, {}))

    def shapes(self, module: str) -> ModuleShapes:
        return self._shapes[module]

    def precision_for(self, module: str, precision: Optional[str] = None) -> str:
        """`precision`, or for None the target's default where the bundle has it, else its first graph's."""
        graphs = self._graphs[module]
        if precision is None:
            default = self.target.default_precision
            return default if default in graphs else next(iter(graphs))
        if precision not in graphs:
            raise InputError("bundle %s has no %s graph for %s (it has %s): %s"
                             % (self.path, precision, module, ", ".join(graphs), _how_to_add(precision)))
        return precision

    def graph(self, module: str, precision: Optional[str] = None) -> GraphEntry:
        """One graph's manifest entry; precision None = the target's default, else the best there is."""
        return self._graphs[module][self.precision_for(module, precision)]

    def graph_path(self, module: str, precision: Optional[str] = None) -> Path:
        return self.path / self.graph(module, precision).onnx_file

    def file_sha256(self, relative: str) -> str:
        return str(self.files[relative]["sha256"])


def _how_to_add(precision: str) -> str:
    """The command that adds a precision's graphs to a bundle."""
    if precision == "int8":
        return ("run minicpmv-convert calibrate --bundle on it, or minicpmv-convert convert --target for a Jetson "
                "target")
    if precision in ("fp32", "fp16"):
        return "re-export it with minicpmv-convert export --precision %s" % precision
    return "choose one of the precisions it has"
