"""check-ops: real bundles pass on their target's TensorRT; graphs TensorRT would refuse are refused, with reasons."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import configs
from converter.check_ops import check_model, format_report
from converter.cli import main
from converter.trt_ops import OperatorTable, releases
from edge.device.profiles import JETPACKS, list_profiles, load_profile

RELEASES = ("8.5", "8.6", "10.3", "10.16", "11.1")


def _model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)  # valid ONNX: a refusal below is TensorRT's, not a malformed graph's
    return model


def _qdq_matmul(zero_dtype=np.int8, zero: Optional[int] = 0, scale: float = 0.02, axis_scales: int = 4,
                axis: int = 1, opset: int = 17) -> onnx.ModelProto:
    """x [2, 3] @ DQ(Q(w [3, 4])) with per-channel weight scales: the layout docs/tensorrt.md prescribes."""
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    scales = numpy_helper.from_array(np.full(axis_scales, scale, np.float32), "w_scale")
    inits: List[onnx.TensorProto] = [w, scales]
    qdq_inputs = ["w", "w_scale"]
    if zero is not None:
        inits.append(numpy_helper.from_array(np.full(axis_scales, zero, zero_dtype), "w_zero"))
        qdq_inputs.append("w_zero")
    nodes = [helper.make_node("QuantizeLinear", qdq_inputs, ["wq"], name="q_w", axis=axis),
             helper.make_node("DequantizeLinear", ["wq"] + qdq_inputs[1:], ["wd"], name="dq_w", axis=axis),
             helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits, opset)


def _reasons(model, release):
    return [p.reason for p in check_model(model, OperatorTable.for_release(release))]


def test_tables_cover_the_supported_releases():
    assert set(RELEASES) <= set(releases())
    assert OperatorTable.for_release("10.13").release == "10.3"  # between tables: the older, known-good one
    assert "LayerNormalization" in OperatorTable.for_release("8.5").not_converted
    assert "LayerNormalization" in OperatorTable.for_release("8.6").converted


@pytest.mark.parametrize("release", RELEASES)
def test_symmetric_per_channel_qdq_passes(release):
    assert _reasons(_qdq_matmul(), release) == []


@pytest.mark.parametrize("release", RELEASES)
def test_uint8_qdq_pair_refused(release):
    reasons = _reasons(_qdq_matmul(zero_dtype=np.uint8, zero=0), release)
    assert len(reasons) == 2 and all("uint8" in r for r in reasons)


@pytest.mark.parametrize("release", RELEASES)
def test_missing_or_nonzero_zero_point_and_bad_scales_refused(release):
    assert any("no zero point" in r for r in _reasons(_qdq_matmul(zero=None), release))
    assert any("not all zero" in r for r in _reasons(_qdq_matmul(zero=3), release))
    assert any("positive" in r for r in _reasons(_qdq_matmul(scale=-0.1), release))
    assert any("per-channel scales" in r for r in _reasons(_qdq_matmul(axis_scales=3, axis=1), release))


@pytest.mark.parametrize("release,refused", [("8.5", True), ("8.6", True), ("10.3", False), ("11.1", False)])
def test_opset_19_against_ceilings(release, refused):
    reasons = _reasons(_qdq_matmul(opset=19), release)
    assert bool(reasons) == refused
    assert all("opset 19 is above" in r for r in reasons)


@pytest.mark.parametrize("release,refused", [("8.5", True), ("8.6", True), ("10.3", False), ("11.1", False)])
def test_int64_graph_input_refused_on_8x(release, refused):
    node = helper.make_node("Cast", ["ids"], ["out"], name="cast", to=TensorProto.INT32)
    model = _model([node], [helper.make_tensor_value_info("ids", TensorProto.INT64, [4])],
                   [helper.make_tensor_value_info("out", TensorProto.INT32, [4])])
    reasons = _reasons(model, release)
    assert bool(reasons) == refused
    assert all("int64 graph input" in r for r in reasons)


@pytest.mark.parametrize("release,refused", [("8.5", True), ("8.6", False), ("10.3", False)])
def test_layernorm_operator_against_tables(release, refused):
    inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("g", "b")]
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1)
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    reasons = _reasons(model, release)
    assert bool(reasons) == refused
    assert all("does not convert LayerNormalization" in r for r in reasons)


def test_custom_domain_operator_refused():
    node = helper.make_node("FusedGemm", ["x", "x"], ["y"], name="fused", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    assert any("custom-domain" in r for r in _reasons(model, "10.3"))


@pytest.mark.parametrize("release,refused", [("8.5", True), ("10.3", False)])
def test_int8_weight_initializer_feeding_dq(release, refused):
    inits = [numpy_helper.from_array(np.ones((3, 4), np.int8), "w8"),
             numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.int8(0), "z")]
    nodes = [helper.make_node("DequantizeLinear", ["w8", "s", "z"], ["wd"], name="dq"),
             helper.make_node("MatMul", ["x", "wd"], ["y"], name="mm")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    assert bool(_reasons(model, release)) == refused


@pytest.mark.parametrize("target", ["xavier-nx", "orin-nano-8gb", "agx-thor"])
def test_bundles_pass_their_targets_tensorrt(make_bundle, capsys, target):
    bundle = make_bundle("2.6", "fp16", target)
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle)]) == 0
    assert capsys.readouterr().out.strip().startswith("passed:")


def test_jetpack6_0_tensorrt_8_6_accepts_an_opset_17_bundle(make_bundle):
    assert main(["check-ops", "--bundle", str(make_bundle("2.5", "fp32", "orin-nano-8gb")), "--trt", "8.6"]) == 0


def test_cli_lists_offending_nodes_and_exits_1(make_bundle, capsys):
    bundle = make_bundle("2.6")  # host-x86: opset 17 with LayerNormalization nodes
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle), "--trt", "8.5"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("FAILED: ")
    assert len(lines) > 1 and all("LayerNormalization" in line for line in lines[:-1])


def test_cli_needs_a_release_for_a_host_bundle(make_bundle, capsys):
    bundle = make_bundle("2.6")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle)]) == 2
    assert "--trt" in capsys.readouterr().err


def _table_files():
    tables = (Path(configs.__file__).parent / "tensorrt").glob("onnx-ops-*.yaml")
    return sorted(p.stem[len("onnx-ops-"):] for p in tables)


@pytest.mark.parametrize("release", ["9.9", "12.0", "10", "10.4", "8.4", "11", "ten"])
def test_unknown_release_refused_with_the_known_ones(make_bundle, capsys, release):
    """A release without a table (and not a documented stand-in) is refused, not checked against another's."""
    bundle = make_bundle("2.6", "fp16", "orin-nano-8gb")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle), "--trt", release]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minicpmv-convert: error:") and release in err[0]
    assert all(known in err[0] for known in _table_files() + ["10.13"]) and "--trt" in err[0]
    assert captured.out == ""


def test_full_version_of_a_known_release(make_bundle, capsys):
    bundle = make_bundle("2.6", "fp16", "orin-nano-8gb")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle), "--trt", "10.3.0.30"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("against TensorRT 10.3.0.30 (table 10.3)")


def test_every_release_the_profiles_name_is_checked(capsys):
    """Each TensorRT a JetPack ships or a shipped profile names is checked: against its own table, or (10.13,
    JetPack 7.0 on Thor) against the 10.3 table, and the report line says so."""
    named = {r.tensorrt for r in JETPACKS.values()} | {load_profile(n).tensorrt for n in list_profiles()} - {None}
    assert "10.13" in named
    for release in sorted(named):
        table = OperatorTable.for_release(release)
        if release in _table_files():
            assert table.release == release
        else:
            assert (release, table.release) == ("10.13", "10.3")
    report = {"tensorrt": "10.13", "table": "10.3", "stand_in": True, "passed": True, "graphs": {}}
    assert format_report(report, "b").endswith("(table 10.3, standing in for 10.13, which has no table of its own)")


def test_thor_bundle_report_names_the_stand_in_table(make_bundle, capsys):
    bundle = make_bundle("2.6", "fp16", "agx-thor")
    capsys.readouterr()
    assert main(["check-ops", "--bundle", str(bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["tensorrt"], report["table"], report["stand_in"], report["passed"]) == ("10.13", "10.3", True, True)
    assert main(["check-ops", "--bundle", str(bundle)]) == 0
    assert "TensorRT 10.13 (table 10.3, standing in for 10.13" in capsys.readouterr().out
