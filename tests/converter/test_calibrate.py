"""INT8 calibration: range methods against numpy, Q/DQ numerics against a hand fake-quantization, and whole
bundles calibrated from synthetic scenes, a folder and a video, with the mixed-precision search."""
from __future__ import annotations

import shutil
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converter.activation_ranges import Histogram, amax_entropy, amax_minmax, amax_percentile
from converter.calibrate import Settings, calibrate_bundle
from converter.calibration_data import load_images
from converter.check_ops import check_model
from converter.cli import main
from converter.qdq import quantizable_nodes, quantize
from converter.trt_ops import OperatorTable
from edge import VisionEncoder
from edge.bundle.manifest import Bundle
from edge.engines.onnxrt import open_session
from edge.errors import InputError
from edge.preprocess.scenes import synthetic_scene


def _histogram(*batches) -> Histogram:
    hist = Histogram()
    for batch in batches:
        hist.add(batch)
    return hist


def test_minmax_and_percentile_match_numpy():
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200_000).astype(np.float32) * 3
    hist = _histogram(values[:1000] * 0.1, values)  # first batch small: the range must grow and merge
    assert amax_minmax(hist) == pytest.approx(np.abs(values).max())
    for q in (99.0, 99.99):
        assert abs(amax_percentile(hist, q) - np.percentile(np.abs(values), q)) <= 2 * hist.bin_width


def test_entropy_clips_rare_outliers_but_keeps_the_bulk():
    rng = np.random.default_rng(1)
    bulk = rng.standard_normal(500_000).astype(np.float32)
    outliers = np.array([80.0, -90.0, 100.0], np.float32)
    amax = amax_entropy(_histogram(np.concatenate([bulk, outliers])))
    assert np.percentile(np.abs(bulk), 99.9) < amax < 50.0


def _entropy_by_levels(hist: Histogram, stride: int = 8) -> float:
    """The KL threshold search written out level by level, as TensorRT's entropy calibrator describes it: 128
    levels from np.array_split, each level's count spread over its non-empty bins, clipped values into the last
    bin; the candidate of least KL divergence wins."""
    counts = hist.counts.astype(np.float64)
    last = int(np.nonzero(counts)[0][-1]) + 1
    best, best_kl = last, np.inf
    for end in range(128, max(last, 128) + 1, stride):
        reference = counts[:end].copy()
        reference[-1] += counts[end:].sum()
        expanded = np.zeros(end)
        for level in np.array_split(np.arange(end), 128):
            used = level[counts[level] > 0]
            if used.size:
                expanded[used] = counts[level].sum() / used.size
        p, q = reference / reference.sum(), expanded / expanded.sum()
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] / np.maximum(q[p > 0], 1e-12))))
        if kl < best_kl:
            best, best_kl = end, kl
    return min(best * hist.bin_width, hist.absmax)


@pytest.mark.parametrize("seed", range(6))
def test_entropy_equals_the_level_by_level_search(seed):
    rng = np.random.default_rng(seed)
    values = rng.standard_t(df=2 + seed, size=50_000) * (1 + seed)
    values[rng.integers(0, values.size, 20)] *= 60  # SigLIP-like outlier channels
    hist = _histogram(np.round(values) if seed % 2 else values)  # odd seeds: sparse, mostly empty bins
    assert amax_entropy(hist) == _entropy_by_levels(hist)


def _matmul_model(weight: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, weight.shape[1]])],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_qdq_numerics_equal_a_hand_fake_quantization():
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((8, 5)).astype(np.float32) * np.array([1, 10, 0.1, 3, 0.5], np.float32)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    amax = 2.5  # x is clipped at 2.5
    quantized = quantize(_matmul_model(weight), {"x": amax}, ["mm"])
    got = open_session(quantized.SerializeToString()).run(None, {"x": x})[0]

    def fake(values, scale):
        return np.clip(np.round(values / scale), -128, 127) * scale  # numpy rounds half to even, as ONNX

    weight_scale = np.abs(weight).max(axis=0) / 127  # per output channel
    want = fake(x, np.float32(amax / 127)) @ fake(weight, weight_scale.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, x @ weight, atol=1e-4)  # quantization noise is really there


def test_qdq_placement_on_an_exported_vpm(make_bundle):
    model = onnx.load(str(Bundle.load(make_bundle("2.6", "fp32", "xavier-nx")).graph_path("vpm", "fp32")))
    nodes = quantizable_nodes(model)
    assert {n.op_type for n in nodes} == {"Conv", "MatMul"}
    assert all(n.op_type != "MatMul" or any(i in {t.name for t in model.graph.initializer} for i in n.input)
               for n in nodes)  # attention matmuls left out by default
    assert len(quantizable_nodes(model, attention=True)) == len(nodes) + 2 * 2  # two per layer, two layers
    quantized = quantize(model, {}, [n.name for n in nodes])  # no activation ranges: weights only
    assert check_model(quantized, OperatorTable.for_release("8.5")) == []
    for node in quantized.graph.node:
        if node.op_type == "DequantizeLinear":
            axis = [a.i for a in node.attribute if a.name == "axis"]
            assert axis in ([0], [1])  # Conv weights by output channel 0, MatMul [K, N] by N


@pytest.fixture
def bundle_copy(make_bundle, tmp_path):
    def copy(version="2.6", target="host-x86"):
        out = tmp_path / ("bundle-%s-%s" % (version, target))
        shutil.copytree(make_bundle(version, "fp32", target), out)
        return out
    return copy


@pytest.mark.parametrize("version", ["2.6", "2.5"])
def test_calibrated_bundle_encodes_in_int8(bundle_copy, version):
    path = bundle_copy(version)
    manifest = calibrate_bundle(path, Settings(count=3, eval_count=1, search=False), log=lambda m: None).manifest
    int8 = manifest["modules"]["vpm"]["graphs"]["int8"]
    assert int8["kept_float"] == [] and int8["quantized_layers"] == 13 and int8["calibration"]["images"] == 3
    assert manifest["mixed_precision"]["token_cosine"]["mean"] > 0.99
    image = synthetic_scene(800, 600, seed=9)
    tokens = {p: VisionEncoder.from_bundle(path, precision=p).encode(image).tokens for p in ("fp32", "int8")}
    cos = (tokens["fp32"] * tokens["int8"]).sum(-1) / np.linalg.norm(tokens["fp32"], axis=-1) / np.linalg.norm(
        tokens["int8"], axis=-1)
    assert cos.mean() > 0.99 and not np.array_equal(tokens["fp32"], tokens["int8"])


def test_search_keeps_layers_float_until_the_target(bundle_copy):
    path = bundle_copy()
    manifest = calibrate_bundle(path, Settings(count=2, eval_count=1, target_cosine=0.99995, min_cosine=0.999),
                                log=lambda m: None).manifest
    graphs = manifest["modules"]
    kept = graphs["vpm"]["graphs"]["int8"]["kept_float"] + graphs["resampler"]["graphs"]["int8"]["kept_float"]
    assert kept and manifest["mixed_precision"]["met"]
    sensitivity = graphs["resampler"]["graphs"]["int8"]["sensitivity"]
    assert set(graphs["resampler"]["graphs"]["int8"]["kept_float"]) <= set(sensitivity)
    first_kept = graphs["resampler"]["graphs"]["int8"]["kept_float"][:1]
    assert not first_kept or sensitivity[first_kept[0]] == max(sensitivity.values())  # most harmful first


def test_calibration_cache_for_a_tensorrt8_target(bundle_copy):
    path = bundle_copy("2.6", "xavier-nx")
    manifest = calibrate_bundle(path, Settings(count=2, eval_count=1, search=False), log=lambda m: None).manifest
    assert manifest["target"]["default_precision"] == "int8"  # a Jetson target's default, once it exists
    files = manifest["modules"]["vpm"]["graphs"]["int8"]["files"]
    assert files == ["int8/vpm.onnx", "int8/vpm.calibration-8.5.cache"]
    lines = (path / files[1]).read_text().splitlines()
    assert lines[0] == "TRT-8502-EntropyCalibration2"
    name, value = lines[1].split(": ")
    assert len(value) == 8 and struct.unpack(">f", bytes.fromhex(value))[0] > 0
    Bundle.load(path)  # every file, caches included, matches its sha256


def test_images_from_a_folder_and_a_video(tmp_path):
    import cv2
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_scene(64, 48, seed=i)).save(folder / ("%d.png" % i))
    assert [im.shape for im in load_images(folder, 5)] == [(48, 64, 3)] * 3
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(10):
        writer.write(synthetic_scene(64, 48, seed=i)[:, :, ::-1])
    writer.release()
    frames = load_images(video, 4)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    with pytest.raises(InputError):
        load_images(tmp_path / "missing", 2)


def test_cli_calibrate_and_bad_data(bundle_copy, tmp_path, capsys):
    path = bundle_copy()
    assert main(["calibrate", "--bundle", str(path), "--count", "2", "--eval-images", "1", "--no-search"]) == 0
    assert "int8 graphs written" in capsys.readouterr().out
    assert main(["calibrate", "--bundle", str(path), "--data", str(tmp_path / "nope")]) == 2
    assert "neither a folder" in capsys.readouterr().err
