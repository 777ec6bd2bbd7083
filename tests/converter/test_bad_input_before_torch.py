"""Bad input to minicpmv-convert is refused before torch (or onnx, onnxruntime, safetensors) is imported: one line
on stderr, exit code 2, nothing written; the commands run here in a Python that cannot import those libraries."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

import configs

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnx", "onnxruntime", "safetensors")
WITHOUT_HEAVY_LIBRARIES = textwrap.dedent("""
    import contextlib
    import importlib.abc
    import io
    import json
    import os
    import sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in %r:
                raise ImportError("%%s is blocked by the test: bad input must be refused before it" %% fullname)
            return None

    sys.meta_path.insert(0, Blocked())
    from converter.cli import main

    workspace, results = sys.argv[1], {}
    for name, args in json.loads(sys.argv[2]).items():  # every command in this one interpreter, one after another
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:
                code = exc.code
            except BaseException as exc:
                code, _ = 1, err.write("%%s: %%s\\n" %% (type(exc).__name__, exc))
        results[name] = {"code": code, "out": out.getvalue(), "err": err.getvalue().splitlines(),
                         "files": sorted(os.listdir(workspace)), "existing": os.listdir(workspace + "/existing")}
    print(json.dumps(results))
""" % (HEAVY,))


def _run(workspace: Path, cases: Dict[str, List[str]]) -> Dict[str, Dict[str, Any]]:
    """Each case's exit code, stdout, stderr lines and the workspace's files after it, run in one Python that
    cannot import the heavy libraries."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_HEAVY_LIBRARIES, str(workspace), json.dumps(cases)],
                            cwd=str(REPO), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, make_checkpoint: Callable[..., Path]) -> Path:
    """A checkpoint copy, one whose config.json disagrees with its weights, a directory without config.json, an
    existing bundle directory, a text file, a file that is not a GGUF, and a profile naming a TensorRT release
    check-ops has no table for."""
    tmp_path = tmp_path_factory.mktemp("refused")
    shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck")
    (tmp_path / "existing").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "llm.gguf").write_bytes(b"NOTGGUF" * 4)
    (tmp_path / "empty-ck").mkdir()
    mismatched = shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck-q96")
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps(dict(config, query_num=96)))  # the weights have Q = 64
    profile = (Path(configs.__file__).parent / "devices" / "orin-nano-8gb.yaml").read_text()
    (tmp_path / "future.yaml").write_text(profile.replace('tensorrt: "10.3"', 'tensorrt: "10.99"'))
    return tmp_path


CASES = {
    "missing checkpoint": (["convert", "--checkpoint", "{w}/none", "--out", "{w}/b"], "does not exist"),
    "checkpoint is a file": (["convert", "--checkpoint", "{w}/notes.txt", "--out", "{w}/b"],
                             "{w}/notes.txt is a file, not a checkpoint directory"),
    "config.json given": (["export", "--checkpoint", "{w}/ck/config.json", "--out", "{w}/b"],
                          "pass its directory: --checkpoint {w}/ck"),
    "no config.json": (["inspect", "--checkpoint", "{w}/empty-ck"], "has no config.json"),
    "weights unlike config": (["export", "--checkpoint", "{w}/ck-q96", "--out", "{w}/b"],
                              "tensor resampler.query has shape (64, 256), expected (96, 256)"),
    "existing --out": (["export", "--checkpoint", "{w}/ck", "--out", "{w}/existing"], "--force"),
    "unknown target": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target", "jetson-tx2"],
                       "unknown target 'jetson-tx2'"),
    "jetpack": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target", "xavier-nx", "--jetpack", "6.2"],
                "cannot run JetPack 6.2"),
    "not a gguf": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target", "orin-nano-8gb",
                    "--llm-gguf", "{w}/llm.gguf"], "is not a GGUF file"),
    "does not fit": (["export", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target", "orin-nano-4gb",
                      "--llm-bytes", str(8 << 30)], "does not fit orin-nano-4gb"),
    "calibration data": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target", "orin-nano-8gb",
                          "--data", "{w}/no-images"], "neither a folder of images nor a video"),
    "tensorrt without a table": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--target",
                                  "{w}/future.yaml"], "no operator table for TensorRT 10.99"),
    "eval images": (["convert", "--checkpoint", "{w}/ck", "--out", "{w}/b", "--eval-images", "0"],
                    "--eval-images must be at least 1"),
    "make-checkpoint --out": (["make-checkpoint", "--model-version", "2.6", "--out", "{w}/existing"], "--force"),
    "bench slice": (["bench", "--checkpoint", "{w}/ck", "--slice", "32by32"], "is not ROWSxCOLS"),
}


@pytest.fixture(scope="module")
def refused(workspace: Path) -> Dict[str, Dict[str, Any]]:
    """Every case, and a valid export last (it must fail once it reaches torch: the block is real)."""
    cases = {name: [a.format(w=workspace) for a in args] for name, (args, _) in CASES.items()}
    cases["valid export"] = ["export", "--checkpoint", str(workspace / "ck"), "--out", str(workspace / "b")]
    return _run(workspace, cases)


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_torch_is_imported(workspace: Path, refused: Dict[str, Dict[str, Any]], case: str) -> None:
    result, expected = refused[case], CASES[case][1]
    err = result["err"]
    assert result["code"] == 2, err
    assert len(err) == 1 and err[0].startswith("minicpmv-convert: error: "), err
    assert expected.format(w=workspace) in err[0]
    assert result["out"] == "" and result["existing"] == []
    assert result["files"] == ["ck", "ck-q96", "empty-ck", "existing", "future.yaml", "llm.gguf", "notes.txt"]


def test_a_good_command_needs_torch_so_the_block_is_real(refused: Dict[str, Dict[str, Any]]) -> None:
    """The same Python fails on a valid export once it reaches torch: the cases above were refused before it."""
    result = refused["valid export"]
    assert result["code"] != 0 and any("torch is blocked by the test" in line for line in result["err"])
