"""The LLM process's metrics, scraped over HTTP from the real endpoint beside the real server (real llama.cpp, tiny
GGUF): answers, generated tokens as the API's own usage counts them, prompt tokens kept in the KV cache, image rows,
responses by status, frames received."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Dict, Tuple

from prometheus_client.parser import text_string_to_metric_families

from edge.service.llm_metrics import LlmMetrics
from edge.service.metrics_server import MetricsServer

from .conftest import post_chat, publish

WAIT_S = 60.0
Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def ask(running) -> Tuple[int, dict]:
    url, model = running.url, running.process.server.model_id
    body = json.dumps({"model": model, "max_tokens": 6, "messages": [{"role": "user", "content": "what is there?"}]})
    return post_chat(url, body.encode(), timeout_s=WAIT_S)


def test_scraped_llm_metrics_equal_the_apis_own_usage(start_llm) -> None:
    running = start_llm()
    server = MetricsServer(LlmMetrics(running.process).registry, "127.0.0.1:0", "--metrics")
    try:
        assert ask(running)[0] == 503  # no frame yet
        publish(running, 1, seed=1)
        deadline = time.monotonic() + WAIT_S
        while running.process.follower.latest is None:
            assert time.monotonic() < deadline, "the frame never arrived"
            time.sleep(0.02)
        answers = [ask(running) for _ in range(2)]
        samples = scrape(server.url)
    finally:
        server.close()
    assert [status for status, _ in answers] == [200, 200]
    completion = sum(body["usage"]["completion_tokens"] for _, body in answers)
    generator = running.process.server.service.generator
    assert samples[("minicpmv_edge_llm_answers_total", ())] == 2
    assert samples[("minicpmv_edge_llm_generated_tokens_total", ())] == completion
    assert samples[("minicpmv_edge_llm_tokens_per_second", ())] > 0
    assert samples[("minicpmv_edge_llm_kept_prompt_tokens_total", ())] == generator.kept_tokens > 0  # the 2nd asked
    fed = samples[("minicpmv_edge_llm_fed_image_rows_total", ())]
    assert fed == generator.fed_image_rows > 0
    assert samples[("minicpmv_edge_llm_kept_image_rows_total", ())] == fed  # the frame: fed once, kept once
    assert samples[("minicpmv_edge_llm_requests_total", (("status", "200"),))] == 2
    assert samples[("minicpmv_edge_llm_requests_total", (("status", "503"),))] == 1
    assert samples[("minicpmv_edge_llm_frames_received_total", ())] == 1
