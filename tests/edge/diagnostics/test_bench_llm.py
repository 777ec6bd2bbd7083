"""`minicpmv-edge bench llm` on a tiny GGUF: the report's structure, positive figures, what each request kept (the
system prompt, then the image rows too); bad input is one line with exit code 2."""
from __future__ import annotations

import json

import pytest

from edge.cli.main import main

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write the tiny GGUF LLMs")
pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]')")


def test_bench_llm_reports_positive_figures(capsys, make_gguf):
    gguf = make_gguf("2.6")
    capsys.readouterr()
    assert main(["bench", "llm", "--gguf", str(gguf), "--rows", "64", "--tokens", "4", "--repeats", "2",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "llm" and report["rows"] == 64 and report["tokens"] == 4
    assert report["repack"] is True and report["model"]["architecture"] == "qwen2"
    assert report["model"]["n_embd"] > 0 and report["model"]["file_bytes"] == gguf.stat().st_size
    assert report["load_s"] > 0 and report["prefill"]["rows_per_s"] > 0 and report["decode"]["tokens_per_s"] > 0
    first = report["first_token"]
    assert first["prefix_tokens"] > 0 and first["prompt_tokens"] > first["prefix_tokens"] + 64
    prefix = first["prefix_tokens"]
    assert first["kept_tokens"] == {"cold": [0, 0], "cached": [prefix] * 2, "image_cached": [prefix + 64] * 2}
    assert first["image_cached_prompt_tokens"] > prefix + 64
    assert first["cold_ms"] > 0 and first["cached_ms"] > 0 and first["image_cached_ms"] > 0
    assert first["cached_over_cold"] == pytest.approx(first["cached_ms"] / first["cold_ms"])
    assert first["image_cached_over_cold"] == pytest.approx(first["image_cached_ms"] / first["cold_ms"])
    memory = report["memory"]
    assert memory["peak_rss_bytes"] >= memory["peak_rss_before_load_bytes"] > 0


def test_bench_llm_text_and_no_repack(capsys, make_gguf):
    assert main(["bench", "llm", "--gguf", str(make_gguf("2.6")), "--rows", "8", "--tokens", "2", "--repeats", "1",
                 "--no-repack"]) == 0
    out = capsys.readouterr().out
    assert "prefill 8 rows" in out and "cached / cold" in out and "peak RSS" in out
    assert "image cached / cold" in out


@pytest.mark.parametrize("content", [None, b"not a model"])
def test_bench_llm_bad_gguf_is_one_line(capsys, tmp_path, content):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    capsys.readouterr()
    assert main(["bench", "llm", "--gguf", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err
    assert ("does not exist" if content is None else "is not a GGUF file") in err
