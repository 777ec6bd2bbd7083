"""Fixtures that make small real things: synthetic checkpoints and bundles exported from them, and short folders for
Unix sockets."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import pytest

VERSIONS = ("2.5", "2.6", "o-2.6", "4.0", "4.5")


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory) -> Callable[..., Path]:
    """Synthetic tiny checkpoints, one per (version, options), made once per session."""
    from converter.synthetic import write_checkpoint

    made: Dict[Tuple, Path] = {}

    def make(version: str = "2.6", size: str = "tiny", **options) -> Path:
        key = (version, size, tuple(sorted(options.items())))
        if key not in made:
            out = tmp_path_factory.mktemp("ckpt") / ("%s-%s" % (version, size))
            made[key] = write_checkpoint(out, version, size, **options)
        return made[key]

    return make


@pytest.fixture(scope="session")
def make_bundle(tmp_path_factory, make_checkpoint) -> Callable[..., Path]:
    """Bundles exported through the CLI, one per (version, precision, target), made once per session."""
    from converter.cli import main

    made: Dict[Tuple, Path] = {}

    def make(version: str = "2.6", precision: str = "fp32", target: str = "host-x86") -> Path:
        key = (version, precision, target)
        if key not in made:
            out = tmp_path_factory.mktemp("bundle") / ("%s-%s-%s" % (version, precision, target))
            args = ["export", "--checkpoint", str(make_checkpoint(version)), "--out", str(out),
                    "--precision", precision, "--target", target]
            assert main(args) == 0
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def converted_bundle(tmp_path_factory, make_checkpoint) -> Path:
    """A tiny 2.6 bundle converted for orin-nano-8gb: fp32, fp16 and int8 graphs."""
    from converter.cli import main

    out = tmp_path_factory.mktemp("converted") / "bundle"
    assert main(["convert", "--checkpoint", str(make_checkpoint("2.6")), "--out", str(out), "--target",
                 "orin-nano-8gb", "--count", "2", "--eval-images", "1", "--verify-images", "1",
                 "--no-search"]) == 0  # the search has tests of its own (tests/converter/test_calibrate.py)
    return out


def pytest_terminal_summary(terminalreporter) -> None:
    """Say loudly, at the end, when the real TensorRT builder's tests were skipped."""
    from tests.rtx import SKIP_REASON

    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SKIP_REASON in str(r.longrepr)]
    if skipped:
        terminalreporter.write_sep("!", "%d TESTS SKIPPED: %s" % (len(skipped), SKIP_REASON), red=True, bold=True)


@pytest.fixture(scope="session")
def make_gguf(tmp_path_factory) -> Callable[..., Path]:
    """Tiny random GGUF LLMs (minicpmv-convert make-gguf), one per (version, seed), made once per session."""
    from converter.gguf_writer import write_gguf

    made: Dict[Tuple[str, int], Path] = {}

    def make(version: str = "2.6", seed: int = 0) -> Path:
        if (version, seed) not in made:
            out = tmp_path_factory.mktemp("gguf") / ("%s-seed%d.gguf" % (version, seed))
            made[(version, seed)] = write_gguf(out, version, seed=seed).path
        return made[(version, seed)]

    return make


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short folder for Unix sockets (at most 107 bytes a path; pytest's tmp_path can be longer)."""
    path = Path(tempfile.mkdtemp(prefix="mcv-", dir="/tmp"))
    yield path
    shutil.rmtree(str(path), ignore_errors=True)


@pytest.fixture(scope="session")
def video_bundle(tmp_path_factory, make_bundle, make_checkpoint) -> Path:
    """A copy of the tiny 4.5 fp32 bundle with the grouped (video) Resampler added by `export-video`."""
    from converter.cli import main

    out = tmp_path_factory.mktemp("video") / "bundle"
    shutil.copytree(make_bundle("4.5"), out)
    assert main(["export-video", "--bundle", str(out), "--checkpoint", str(make_checkpoint("4.5"))]) == 0
    return out


@pytest.fixture(scope="session")
def trt_video_bundle(tmp_path_factory, make_bundle, make_checkpoint) -> Path:
    """A tiny 4.5 fp16 bundle for orin-nano-8gb (TensorRT 10.3) with the grouped Resampler at fp32 and fp16."""
    from converter.cli import main

    out = tmp_path_factory.mktemp("video-trt") / "bundle"
    shutil.copytree(make_bundle("4.5", "fp16", "orin-nano-8gb"), out)
    assert main(["export-video", "--bundle", str(out), "--checkpoint", str(make_checkpoint("4.5")),
                 "--precision", "fp32", "--precision", "fp16"]) == 0
    return out
