"""minicpmv-convert verify: every precision of a bundle against the torch float32 reference, per module, per slice
and per layer, recorded in the manifest and drawn in an HTML report; bad input refused with one line."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import pytest
import yaml
from PIL import Image

from converter.calibrate import Settings, calibrate_bundle
from converter.calibration_data import images_sha256, load_images
from converter.cli import main
from converter.report_html import bars_svg, histogram_svg
from converter.verify import residual_outputs, verify_bundle
from edge.bundle.manifest import MANIFEST, Bundle, write_manifest
from edge.preprocess.scenes import synthetic_scene

MODULES = ("vpm", "resampler", "chain")


@pytest.fixture(scope="module")
def verified(tmp_path_factory, make_checkpoint):
    """A 2.6 tiny bundle with fp32, fp16 and int8 graphs (its own, never a shared fixture), verified on 2 images."""
    checkpoint = make_checkpoint("2.6")
    bundle = tmp_path_factory.mktemp("verify") / "bundle"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(bundle),
                 "--precision", "fp32", "--precision", "fp16"]) == 0
    calibrate_bundle(bundle, Settings(count=2, eval_count=1, search=False), log=lambda message: None)
    lines = []
    result = verify_bundle(bundle, checkpoint, count=2, log=lines.append)
    return bundle, result, lines


def test_every_precision_against_torch(verified):
    _, result, lines = verified
    precisions = result.summary["precisions"]
    assert list(precisions) == ["fp32", "fp16", "int8"]
    fp32, fp16, int8 = (precisions[p] for p in ("fp32", "fp16", "int8"))
    for module in MODULES:
        assert fp32[module]["min"] > 0.99999 and fp32[module]["relative_error"] < 1e-4, module
        assert fp16[module]["min"] > 0.99, module
        assert fp16[module]["relative_error"] > fp32[module]["relative_error"], module
        assert int8[module]["mean"] > 0.99, module
    assert fp16["chain"]["min"] < fp32["chain"]["min"]
    assert int8["chain"]["min"] < fp16["chain"]["min"]
    slices = result.summary["images"]["slices"]
    for entry in precisions.values():
        for module in MODULES:
            figures = entry[module]
            assert figures["min"] <= figures["p1"] <= figures["mean"] <= 1.0 + 1e-6
            assert [s["slice"] for s in figures["slices"]] == list(range(slices))
            assert {s["image"] for s in figures["slices"]} == {0, 1}
            assert all(s["rows"] * s["cols"] > 0 and s["min"] <= s["mean"] for s in figures["slices"])
        assert entry["chain"]["vectors"] == slices * 64  # Q = 64 tokens per slice (tiny 2.6)
        timing = entry["timing"]
        assert timing["vpm_ms_per_batch"] > 0 and timing["resampler_ms_per_batch"] > 0
        assert timing["chain_ms_per_batch"] == pytest.approx(timing["vpm_ms_per_batch"] +
                                                             timing["resampler_ms_per_batch"], rel=1e-6)
    assert len(result.chain_cosines["int8"]) == int8["chain"]["vectors"]
    assert any("int8 graph is TensorRT-style Q/DQ" in note and "not expected to be faster" in note
               for note in result.summary["notes"])
    assert any(line.startswith("int8: chain") for line in lines)  # progress names precision and module


def test_per_layer_errors_on_the_worst_slice(verified):
    _, result, _ = verified
    precisions = result.summary["precisions"]
    for precision, entry in precisions.items():
        worst = entry["worst_slice"]
        chain_slices = entry["chain"]["slices"]
        assert worst["min"] == min(s["min"] for s in chain_slices)
        assert [layer["layer"] for layer in worst["layers"]] == [0, 1], precision  # tiny: 2 encoder layers
        assert [layer["tensor"] for layer in worst["layers"]] == ["/layers.0/Add_1_output_0",
                                                                  "/layers.1/Add_1_output_0"]
        assert all(layer["relative_error"] >= 0 for layer in worst["layers"]), precision
    errors = {p: max(layer["relative_error"] for layer in e["worst_slice"]["layers"]) for p, e in precisions.items()}
    assert errors["fp32"] < 1e-6
    assert errors["int8"] > errors["fp32"] and errors["fp16"] > errors["fp32"]


def test_manifest_and_report(verified):
    bundle, result, _ = verified
    reloaded = Bundle.load(bundle)  # every sha256 still matches
    recorded = reloaded.manifest["verification"]
    assert recorded == json.loads(json.dumps(result.summary))
    assert recorded["images"]["count"] == 2 and recorded["images"]["source"] == "synthetic scenes"
    assert recorded["images"]["seed"] == 2
    assert recorded["images"]["data_sha256"] == images_sha256(load_images(None, 2, seed=2))
    assert recorded["report"] == "report.html" and "report.html" not in reloaded.manifest["files"]
    assert "int8" in reloaded.manifest["modules"]["vpm"]["graphs"]  # calibration's entries kept
    html = (bundle / "report.html").read_text()
    assert html.count("<svg") == 3 + 2  # a histogram per precision, per-layer bars per precision but fp32
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for precision, entry in recorded["precisions"].items():
        assert "%.7f" % entry["chain"]["mean"] in html
        assert "%s chain: token cosine" % precision in html
        assert "%.3g" % entry["worst_slice"]["layers"][0]["relative_error"] in html


def test_cli_json_on_a_folder_of_images(tmp_path, make_bundle, make_checkpoint, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(make_bundle("2.6"), bundle)
    folder = tmp_path / "held-out"
    folder.mkdir()
    for index, size in enumerate(((700, 500), (300, 460))):
        Image.fromarray(synthetic_scene(*size, seed=50 + index)).save(folder / ("%d.png" % index))
    report = tmp_path / "out" / "verify.html"
    report.parent.mkdir()
    capsys.readouterr()
    assert main(["verify", "--bundle", str(bundle), "--checkpoint", str(make_checkpoint("2.6")), "--data",
                 str(folder), "--images", "5", "--report", str(report), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert list(summary["precisions"]) == ["fp32"]
    assert summary["images"]["count"] == 2 and summary["images"]["source"] == str(folder)
    assert summary["images"]["data_sha256"] == images_sha256(load_images(folder, 2))
    assert summary["report"] == str(report.resolve()) and report.is_file()
    assert "fp32: chain" in captured.err  # progress on stderr
    assert yaml.safe_load((bundle / MANIFEST).read_text())["verification"]["report"] == str(report.resolve())


def test_cli_table(tmp_path, make_bundle, make_checkpoint, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(make_bundle("2.6"), bundle)
    capsys.readouterr()
    assert main(["verify", "--bundle", str(bundle), "--checkpoint", str(make_checkpoint("2.6")),
                 "--images", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fp32\s+chain\s+1\.0000000\s+", out, re.M)
    assert "per-layer relative error" in out and "report: report.html" in out
    assert (bundle / "report.html").is_file()


def test_missing_layer_tensor_is_skipped_with_a_note(tmp_path, make_bundle, make_checkpoint):
    """A graph without a layer's residual tensor (renamed here) gets that layer skipped, not a crash."""
    bundle = tmp_path / "bundle"
    shutil.copytree(make_bundle("2.6", "fp16"), bundle)
    shutil.copytree(make_bundle("2.6", "fp32") / "fp32", bundle / "fp32")
    manifest = Bundle.load(bundle).manifest
    fp32_manifest = Bundle.load(make_bundle("2.6", "fp32")).manifest
    for module in ("vpm", "resampler"):
        manifest["modules"][module]["graphs"]["fp32"] = fp32_manifest["modules"][module]["graphs"]["fp32"]
    path = bundle / "fp16" / "vpm.onnx"
    model = onnx.load(str(path))
    for node in model.graph.node:
        node.input[:] = ["renamed" if n == "/layers.1/Add_1_output_0" else n for n in node.input]
        node.output[:] = ["renamed" if n == "/layers.1/Add_1_output_0" else n for n in node.output]
    onnx.save(model, str(path))
    write_manifest(bundle, manifest)
    result = verify_bundle(bundle, make_checkpoint("2.6"), count=1, log=lambda message: None).summary
    layers = result["precisions"]["fp16"]["worst_slice"]["layers"]
    assert layers[0]["relative_error"] >= 0 and layers[1]["relative_error"] is None
    assert any("layer 1 skipped" in note and "fp16" in note for note in result["notes"])
    assert "n/a" in (bundle / "report.html").read_text()


def test_checkpoint_of_another_version_is_refused(make_bundle, make_checkpoint, capsys):
    bundle = make_bundle("2.6")
    before = (bundle / MANIFEST).read_bytes()
    capsys.readouterr()
    code = main(["verify", "--bundle", str(bundle), "--checkpoint", str(make_checkpoint("2.5")), "--images", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    recorded = Bundle.load(bundle).model.weights_sha256
    assert recorded in err[0] and re.search(r"sha256 [0-9a-f]{64}\)", err[0])
    assert (bundle / MANIFEST).read_bytes() == before and not (bundle / "report.html").exists()


def test_bad_bundles_are_refused(tmp_path, make_bundle, make_checkpoint, capsys):
    checkpoint = str(make_checkpoint("2.6"))
    capsys.readouterr()
    assert main(["verify", "--bundle", str(tmp_path / "none"), "--checkpoint", checkpoint]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a bundle" in err[0]
    fp16_only = tmp_path / "fp16-only"
    shutil.copytree(make_bundle("2.6", "fp16"), fp16_only)
    assert main(["verify", "--bundle", str(fp16_only), "--checkpoint", checkpoint]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no fp32 graphs" in err[0] and "--precision fp32" in err[0]


def test_residual_outputs_of_the_fp32_graph(make_bundle):
    model = onnx.load(str(Bundle.load(make_bundle("2.6")).graph_path("vpm", "fp32")))
    assert residual_outputs(model) == {0: "/layers.0/Add_1_output_0", 1: "/layers.1/Add_1_output_0"}


def test_svg_pictures():
    flat = histogram_svg(np.ones(10), 8, "all <equal>")
    assert flat.startswith("<svg") and "all &lt;equal&gt;" in flat and flat.count("<rect") == 1
    spread = histogram_svg(np.linspace(0.9, 1.0, 100), 10, "spread")
    assert spread.count("<rect") == 10 and "0.9" in spread
    bars = bars_svg(["L0", "L1", "L2"], [0.0, None, 2e-3], "layers")
    assert bars.count("<rect") == 1 and "n/a" in bars and "0.002" in bars
    for svg in (flat, spread, bars, histogram_svg([], 4, "empty")):
        assert svg.endswith("</svg>")


def _pictures(html):
    """The report's SVG pictures by title."""
    return {re.search(r'font-weight="bold">([^<]*)</text>', svg).group(1): svg
            for svg in re.findall(r"<svg.*?</svg>", html, re.S)}


def _labels(svg):
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_report_has_no_per_layer_chart_for_the_reference(verified):
    """fp32 is the per-layer reference: no chart comparing it with itself, a line saying why and where its own
    error is; the other precisions keep theirs."""
    bundle, result, _ = verified
    html = (bundle / "report.html").read_text()
    titles = set(_pictures(html))
    assert "fp32: VPM layer output relative error" not in titles
    assert {"fp16: VPM layer output relative error", "int8: VPM layer output relative error"} <= titles
    own_error = "%.3g" % result.summary["precisions"]["fp32"]["vpm"]["relative_error"]
    assert re.search(r"<p>fp32: no chart, as the fp32 ONNX graph is the reference[^<]*%s on the VPM output"
                     % re.escape(own_error), html)


def test_report_histograms_show_the_spread_of_1_minus_cosine(verified):
    """Each chain histogram's axis is labelled in decades that bracket the measured 1 - cosine (fp32's too, whose
    cosines all print as 1.0), and the precisions sit where their accuracy puts them: fp32 left of fp16, fp16 left
    of int8."""
    bundle, result, _ = verified
    pictures = _pictures((bundle / "report.html").read_text())
    spans = {}
    for precision, cosines in result.chain_cosines.items():
        svg = pictures["%s chain: token cosine, as 1 - cosine" % precision]
        decades = [int(label[2:]) for label in _labels(svg) if re.fullmatch(r"1e-?\d+", label)]
        loss = np.maximum(1.0 - cosines, 1e-15)
        assert len(set(decades)) >= 2, precision
        assert 10.0 ** min(decades) <= loss.min() < 10.0 ** (min(decades) + 1), precision
        assert 10.0 ** (max(decades) - 1) < loss.max() <= 10.0 ** max(decades), precision
        assert svg.count("<rect") >= 1 and "%d values" % cosines.size in svg
        spans[precision] = (min(decades), max(decades))
    assert spans["fp32"][1] <= spans["fp16"][0] and spans["fp16"][1] <= spans["int8"][0]


def test_report_notes_point_at_the_figure_they_cite(verified):
    """The note on fp32 as the reference quotes the fp32 vpm relative error, which the fp32 vpm row of the first
    table shows (a number, not the fp32 per-layer zeros)."""
    bundle, result, _ = verified
    html = (bundle / "report.html").read_text()
    figure = "%.3g" % result.summary["precisions"]["fp32"]["vpm"]["relative_error"]
    assert float(figure) > 0
    note = next(n for n in result.summary["notes"] if n.startswith("fp32 ONNX equals"))
    assert figure in note and "fp32 vpm row" in note and "figure" not in note
    assert re.search(r"<tr><td>fp32</td><td>vpm</td>(?:<td>[^<]*</td>){4}<td>%s</td></tr>" % re.escape(figure), html)


def test_checkpoint_advice_names_verify_flags(tmp_path, make_bundle, make_checkpoint, capsys):
    """verify has no --model-version: a checkpoint whose tensors do not fit is refused naming --checkpoint, and a
    config.json that does not tell its version is read as the bundle's version."""
    bundle = tmp_path / "bundle"
    shutil.copytree(make_bundle("2.6"), bundle)
    checkpoint = shutil.copytree(make_checkpoint("2.6"), tmp_path / "ck")
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps(dict(config, query_num=96)))
    capsys.readouterr()
    assert main(["verify", "--bundle", str(bundle), "--checkpoint", str(checkpoint), "--images", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected (96, 256)" in err[0] and "--model-version" not in err[0]
    assert err[0].endswith("pass --checkpoint with the checkpoint bundle %s was exported from" % bundle)
    untold = {k: v for k, v in config.items() if k not in ("model_type", "version")}  # hidden_size 256: no match
    (checkpoint / "config.json").write_text(json.dumps(untold))
    assert main(["verify", "--bundle", str(bundle), "--checkpoint", str(checkpoint), "--images", "1"]) == 0
    assert Bundle.load(bundle).manifest["verification"]["model_version"] == "2.6"
