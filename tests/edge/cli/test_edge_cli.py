"""`minicpmv-edge encode` and `minicpmv-edge bench preprocess`: real runs, their JSON, and bad input (exit 2)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edge import VisionEncoder
from edge.cli.main import main
from edge.preprocess.scenes import synthetic_scene


def _json(capsys, args):
    capsys.readouterr()  # drop what fixtures printed (bundle export progress)
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_encode_writes_the_api_tokens(make_bundle, tmp_path, capsys):
    bundle, out = make_bundle("2.6"), tmp_path / "tokens.npy"
    report = _json(capsys, ["encode", "--bundle", str(bundle), "--scene", "800x600", "--out", str(out), "--json"])
    want = VisionEncoder.from_bundle(bundle).encode(synthetic_scene(800, 600))
    np.testing.assert_array_equal(np.load(out), want.tokens)
    assert report["tokens_shape"] == list(want.tokens.shape) and tuple(report["grid"]) == want.grid
    assert report["prompt"].count("{Q}") == want.tokens.shape[0]  # one per token block
    assert not [p for p in tmp_path.iterdir() if p.name != "tokens.npy"]  # no temp file left behind


def test_encode_prints_each_merger_slice_count_as_the_processor_places_them(make_bundle, capsys):
    """4.6: a slice's {N} in the printed layout is that slice's <unk> count in transformers' processor prompt."""
    pytest.importorskip("transformers.models.minicpmv4_6")
    from PIL import Image

    from tests.edge import minicpmv46_reference as reference

    bundle = make_bundle("4.6")
    report = _json(capsys, ["encode", "--bundle", str(bundle), "--scene", "800x600", "--json"])
    want = VisionEncoder.from_bundle(bundle).encode(synthetic_scene(800, 600))
    counts = [int(n) for n in re.findall(r"{(\d+)}", report["prompt"])]
    assert counts == want.token_counts and sum(counts) == want.tokens.shape[0] and "{Q}" not in report["prompt"]
    tokenizer = reference.tiny_tokenizer()
    ours = re.sub(r"{(\d+)}", lambda m: "<unk>" * int(m.group(1)), report["prompt"])
    inputs = reference.processor("4.6", tokenizer)(images=[Image.fromarray(synthetic_scene(800, 600))], text=["<unk>"],
                                                   downsample_mode="16x", return_tensors="np")
    assert tokenizer(ours)["input_ids"] == inputs["input_ids"][0].tolist()


@pytest.mark.parametrize("version", ["2.6", "4.6"])
def test_inspect_names_the_tokens_per_slice(make_bundle, capsys, version):
    """Q is the bundle's fixed query count, or "per slice" for the merger versions (whose query_num is 0)."""
    from edge.bundle.manifest import Bundle

    bundle = make_bundle(version)
    capsys.readouterr()
    assert main(["inspect", "--bundle", str(bundle)]) == 0
    query_num = Bundle.load(bundle).model.query_num
    assert ("Q=%d D=" % query_num if query_num else "Q=per slice D=") in capsys.readouterr().out


def test_encode_reads_an_image_file(make_bundle, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "frame.png"
    Image.fromarray(synthetic_scene(320, 200)).save(path)
    report = _json(capsys, ["encode", "--bundle", str(make_bundle("2.5")), "--image", str(path), "--json"])
    assert report["tokens_shape"] == [1, 96, 256] and report["grid"] is None


@pytest.mark.parametrize("extra,message", [
    (["--image", "MISSING"], "cannot read image"),
    (["--max-slice-nums", "99"], "max_slice_nums"),
    (["--precision", "int8"], "no int8 graph"),
    (["--out", "/nonexistent-dir/t.npy"], "does not exist"),
])
def test_encode_bad_input_is_one_line_exit_2(make_bundle, tmp_path, capsys, extra, message):
    extra = [str(tmp_path / e) if e == "MISSING" else e for e in extra]
    source = [] if "--image" in extra else ["--scene", "64x64"]
    bundle = str(make_bundle("2.6"))
    capsys.readouterr()
    assert main(["encode", "--bundle", bundle] + source + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bench_preprocess_report(make_bundle, capsys):
    report = _json(capsys, ["bench", "preprocess", "--sizes", "640x480,300x200", "--repeats", "1",
                            "--bundle", str(make_bundle("2.6")), "--json"])
    assert report["spec_examples"] == {"checked": 7, "matching": 7, "wrong": []}
    first = report["sizes"][0]
    assert first["size"] == "640x480" and first["grid"] == [2, 1] and first["slices"] == 3
    assert first["exact"]["pixels_vs_reference"]["identical"]
    assert not first["fast"]["pixels_vs_reference"]["identical"]
    for row in report["sizes"]:
        assert row["fast"]["speedup_vs_reference"] > 0 and row["exact"]["min_ms"] > 0
        assert row["fast"]["cpu_ratio_vs_reference"] > 0 and row["reference_pil"]["cpu_min_ms"] > 0
        assert 0.9 < row["token_cosine_fast_vs_exact"]["mean"] <= 1.0
        assert row["token_cosine_between_scenes"]["mean"] < row["token_cosine_fast_vs_exact"]["mean"]


def test_bench_preprocess_without_bundle_and_bad_sizes(capsys):
    report = _json(capsys, ["bench", "preprocess", "--sizes", "100x60", "--repeats", "1", "--json"])
    assert "token_cosine_fast_vs_exact" not in report["sizes"][0]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "preprocess", "--sizes", "640"])
    assert exc.value.code == 2
