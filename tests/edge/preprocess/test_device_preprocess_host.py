"""Device preprocessing, the parts that need no GPU: the strip writer's tables (checked by applying them in numpy to
the exact path's images and comparing with pack_slices), buffer handling, path choice and the doctor line."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from edge.diagnostics import doctor
from edge.errors import InputError
from edge.preprocess.device import kernels, selection
from edge.preprocess.device.buffers import DeviceBuffers
from edge.preprocess.device.selection import DeviceSupport, choose_path
from edge.preprocess.device.strip_map import (
    PARAMS_PER_SLICE,
    batch_layouts,
    normalise_table,
    slice_params,
    strip_elements,
)
from edge.preprocess.graph_inputs import index_inputs, pack_slices
from edge.preprocess.preprocessor import Preprocessor
from edge.preprocess.resize import resize_exact
from edge.preprocess.scenes import synthetic_scene
from edge.preprocess.slicing import DEFAULT
from tests.standins.fake_pycuda import FakeDeviceMemory


def write_strips(overview, refined, params, total, table):
    """What the strip kernel computes, element by element, from the same parameter rows (numpy, for the test)."""
    out = np.zeros(total, dtype=table.dtype)
    for image, x0, y0, cols, rows, offset, length, _ in params:
        source = refined if image else overview
        channel, row, column = np.meshgrid(np.arange(3), np.arange(14), np.arange(14 * length), indexing="ij")
        patch = column // 14
        valid = patch < rows * cols
        y = y0 + (patch // cols) * 14 + row
        x = x0 + (patch % cols) * 14 + column % 14
        values = np.zeros(channel.shape, dtype=table.dtype)
        values[valid] = table[source[y[valid], x[valid], channel[valid]]]
        out[offset:offset + values.size] = values.reshape(-1)
    return out


@pytest.mark.parametrize("frame, max_batch, graph_layout, dtype", [
    ((1920, 1080), 4, "masked-2d", np.float32),
    ((500, 300), 4, "masked-2d", np.float32),
    ((1344, 1344), 16, "unmasked-1d", np.float16),
    ((3000, 500), 3, "masked-2d", np.float16),
    ((600, 2000), 2, "masked-2d", np.float32),
])
def test_strip_tables_reproduce_pack_slices(frame, max_batch, graph_layout, dtype):
    rgb = synthetic_scene(*frame, seed=4)
    preprocessor = Preprocessor(DEFAULT, "exact")
    plan = preprocessor.plan(rgb)
    slices = preprocessor.slices(rgb, plan)
    batches = [(first, min(max_batch, len(slices) - first)) for first in range(0, len(slices), max_batch)]
    layouts = batch_layouts(plan.patch_grids(), batches)
    params = slice_params(plan, layouts)
    assert params.shape == (len(slices), PARAMS_PER_SLICE) and params.dtype == np.int32
    refined = resize_exact(rgb, plan.refine_size) if plan.refine_size else slices[0]
    written = write_strips(slices[0], refined, params, strip_elements(layouts), normalise_table(dtype))
    for (first, size), layout in zip(batches, layouts):
        want = pack_slices(slices[first:first + size], graph_layout, dtype)
        got = written[layout.offset:layout.offset + layout.elements].reshape(layout.shape)
        assert np.array_equal(got.view(np.uint8), want.vpm["pixel_values"].view(np.uint8))
        feeds = index_inputs(layout.sizes, graph_layout, got)
        for name in ("position_ids", "patch_counts"):
            assert np.array_equal(feeds.vpm[name], want.vpm[name])
        assert np.array_equal(feeds.resampler["tgt_sizes"], want.resampler["tgt_sizes"])


def test_layouts_pack_batches_back_to_back():
    layouts = batch_layouts([(24, 43), (32, 32), (32, 32), (32, 32)], [(0, 3), (3, 1)])
    assert [layout.offset for layout in layouts] == [0, 3 * 3 * 14 * 14 * 1032]
    assert layouts[0].shape == (3, 3, 14, 14 * 1032) and layouts[1].shape == (1, 3, 14, 14 * 1024)
    assert strip_elements(layouts) == 3 * 3 * 14 * 14 * 1032 + 3 * 14 * 14 * 1024


def test_normalise_tables():
    assert normalise_table(np.float32)[[0, 255]].tolist() == [-1.0, 1.0]
    assert normalise_table(np.float16).dtype == np.uint16  # the kernel writes half bits
    with pytest.raises(ValueError, match="float32 or float16"):
        normalise_table(np.int8)


def test_buffers_grow_upload_tables_once_and_free_everything():
    memory = FakeDeviceMemory()
    buffers = DeviceBuffers(memory)
    first = buffers.get("frame", 100)
    assert buffers.get("frame", 50) == first and memory.allocations == 1
    assert buffers.get("frame", 200) != first and memory.frees == 1
    table = np.arange(5, dtype=np.int32)
    pointer = buffers.table(("t", 5), table)
    assert buffers.table(("t", 5), table) == pointer and memory.allocations == 3
    assert np.frombuffer(memory.read(pointer, table.nbytes), np.int32).tolist() == [0, 1, 2, 3, 4]
    assert buffers.device_bytes == 200 + table.nbytes
    buffers.close()
    assert memory.buffers == {}


READY = DeviceSupport(True, "pycuda 2026.1, NVIDIA H200, nvcc /usr/local/cuda/bin/nvcc, 1 compiled kernel module(s)")
MISSING = DeviceSupport(False, "no pycuda", selection.PYCUDA_FIX)


def test_path_choice():
    assert choose_path("exact") == ("exact", "resize: exact")
    assert choose_path("fast", MISSING)[0] == "fast"
    assert choose_path("auto", READY) == ("device", READY.found)
    assert choose_path("device", READY)[0] == "device"
    path, why = choose_path("auto", MISSING)
    assert path == "exact" and "no pycuda" in why
    with pytest.raises(InputError, match="resize: device cannot run here .no pycuda.: pip install pycuda"):
        choose_path("device", MISSING)
    with pytest.raises(ValueError, match="resize must be one of exact, fast, torchvision, device, auto"):
        choose_path("gpu")


def test_probe_without_pycuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)  # import fails as on a box without it
    assert selection.device_support() == MISSING


def test_kernel_cache_and_nvcc_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "k"))
    assert kernels.kernel_cache_dir() == tmp_path / "k" and kernels.cached_kernel_files() == 0
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "0123.cubin").write_bytes(b"")
    assert kernels.cached_kernel_files() == 1
    monkeypatch.delenv(kernels.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert kernels.kernel_cache_dir() == tmp_path / "minicpmv-edge" / "cuda-kernels"
    fake = tmp_path / "cuda" / "bin" / "nvcc"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CUDA_ROOT", str(tmp_path / "cuda"))
    assert kernels.find_nvcc() == str(fake)


def test_doctor_says_which_path_and_why():
    ready = doctor.check_preprocessing(lambda: READY)
    assert ready.status == doctor.OK and ready.found.startswith("device") and "H200" in ready.found
    missing = doctor.check_preprocessing(lambda: MISSING)
    assert missing.status == doctor.WARN and "exact on the CPU" in missing.found and "pip install pycuda" in missing.fix


def test_encoder_device_mode_without_a_device(make_bundle, monkeypatch):
    from edge.encoder.vision_encoder import VisionEncoder

    monkeypatch.setattr(selection, "device_support", lambda: MISSING)
    bundle = make_bundle("2.6")
    with pytest.raises(InputError, match="resize: device cannot run here"):
        VisionEncoder.from_bundle(bundle, resize="device")
    rgb = synthetic_scene(300, 200, seed=2)
    with VisionEncoder.from_bundle(bundle, resize="auto") as auto, \
            VisionEncoder.from_bundle(bundle, resize="exact") as exact:
        assert auto.preprocess_path == "exact" and "no pycuda" in auto.preprocess_reason
        assert np.array_equal(auto.encode(rgb).tokens, exact.encode(rgb).tokens)


def test_bench_without_a_device_is_one_line_and_exit_2(monkeypatch, capsys):
    from edge.cli.main import main

    monkeypatch.setattr(selection, "device_support", lambda: MISSING)
    assert main(["bench", "device-preprocess", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().count("\n") == 0
    assert "device-preprocess needs a CUDA device with pycuda, found no pycuda: pip install pycuda" in captured.err


def test_encode_command_says_which_path_ran(make_bundle, monkeypatch, capsys):
    import json

    from edge.cli.main import main

    monkeypatch.setattr(selection, "device_support", lambda: MISSING)
    bundle = str(make_bundle("2.6"))
    assert main(["encode", "--bundle", bundle, "--scene", "300x200", "--resize", "auto", "--json"]) == 0
    preprocess = json.loads(capsys.readouterr().out)["preprocess"]
    assert preprocess["path"] == "exact" and "no pycuda" in preprocess["why"]
    assert main(["encode", "--bundle", bundle, "--scene", "300x200", "--resize", "device"]) == 2
    assert "resize: device cannot run here (no pycuda)" in capsys.readouterr().err
