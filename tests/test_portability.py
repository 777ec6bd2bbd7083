"""edge/ must run on a Jetson's system Python (3.8 on JetPack 5), without torch, converter or transformers,
and on a host without TensorRT or pycuda."""
import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EDGE = REPO / "edge"
OLDEST_PYTHON = (3, 8)
# Absent on the device (torch, transformers, converter) or absent off it (tensorrt, pycuda).
BLOCKED = ("torch", "tensorrt", "pycuda", "converter", "transformers")


def edge_sources():
    return sorted(p for p in EDGE.rglob("*.py") if "__pycache__" not in p.parts)


def has_postponed_annotations(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names)
               for node in tree.body)


def run_vermin(files, *options):
    """vermin 1.9 has no __main__ module: call its console entry point through this interpreter."""
    command = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
               "--no-tips", "--no-config-file", "--violations", "-t=%d.%d-" % OLDEST_PYTHON, *options]
    return subprocess.run(command + [str(f) for f in files], cwd=str(REPO), capture_output=True, text=True,
                          timeout=300)


def test_edge_needs_at_most_python_3_8():
    pytest.importorskip("vermin", reason="vermin is not installed (pip install -e '.[dev]'): cannot check "
                                         "edge/'s minimum Python version")
    sources = edge_sources()
    assert sources, "no Python files under edge/"
    # Annotations are evaluated at definition time unless the module postpones them (PEP 563): only then may
    # they use 3.9+ forms such as list[int].
    postponed = [p for p in sources if has_postponed_annotations(p)]
    evaluated = [p for p in sources if p not in postponed]
    for files, options in ((postponed, ()), (evaluated, ("--eval-annotations",))):
        if not files:
            continue
        result = run_vermin(files, *options)
        report = result.stdout + result.stderr
        assert result.returncode == 0, "edge/ needs a newer Python than %d.%d:\n%s" % (*OLDEST_PYTHON, report)
        match = re.search(r"Minimum required versions:\s*(.+)", report)
        if match:  # e.g. "3.7" or "~2, 3.6": the last entry is the Python 3 requirement
            newest = match.group(1).split(",")[-1].strip().lstrip("~!")
            if re.match(r"^\d+\.\d+$", newest):
                assert tuple(int(x) for x in newest.split(".")) <= OLDEST_PYTHON, report


IMPORT_ALL = textwrap.dedent("""
    import importlib
    import importlib.abc
    import pkgutil
    import sys
    import traceback

    BLOCKED = set(sys.argv[1:])

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in BLOCKED:
                raise ImportError("%s is not available here (blocked by the portability test)" % fullname)
            return None

    sys.meta_path.insert(0, Blocked())

    failures = []
    import edge
    import edge.device.profiles
    names = ["edge"]
    for info in pkgutil.walk_packages(edge.__path__, "edge.", onerror=lambda name: failures.append(name)):
        names.append(info.name)
    for name in names:
        if name.endswith(".__main__"):
            continue  # running it is the command itself
        try:
            importlib.import_module(name)
        except BaseException:
            failures.append("%s:\\n%s" % (name, traceback.format_exc()))
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if leaked:
        failures.append("blocked modules were imported anyway: %s" % ", ".join(leaked))
    if failures:
        print("\\n".join(failures))
        sys.exit(1)
    print("imported %d modules: %s" % (len(names), " ".join(names)))
""")


def test_every_edge_module_imports_without_host_or_device_libraries():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, *BLOCKED], cwd=str(REPO), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, "edge/ import failed with %s blocked:\n%s%s" % (
        ", ".join(BLOCKED), result.stdout, result.stderr)
    assert "edge.device.profiles" in result.stdout
