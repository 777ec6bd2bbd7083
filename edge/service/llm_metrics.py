"""The LLM process's Prometheus metrics, read when scraped, in a registry of their own (docs/service.md lists them):
answers and the tokens they generated, the recent generation rate, the prompt tokens kept in the KV cache, image
rows fed, API responses by status, and camera frames received from the agent's stream."""
from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..llm.generate import RECENT_ANSWERS

PREFIX = "minicpmv_edge_llm_"


class LlmMetrics:
    """Metrics of `process` (an edge.llm.process.LlmProcess), in `registry`: a registry of their own."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        server = self.process.server
        generator = server.service.generator
        for name, doc, value in (
                ("answers", "answers generated (an answer cut off by its reader counts too)", generator.answers),
                ("generated_tokens", "tokens the answers generated", generator.generated_tokens),
                ("kept_prompt_tokens", "prompt tokens kept in the KV cache instead of being fed again",
                 generator.kept_tokens),
                ("kept_image_rows", "image token rows kept in the KV cache", generator.kept_image_rows),
                ("fed_image_rows", "image token rows fed to the LLM", generator.fed_image_rows)):
            yield CounterMetricFamily(PREFIX + name, doc, value=value)
        rate = generator.tokens_per_s
        if rate is not None:
            yield GaugeMetricFamily(PREFIX + "tokens_per_second", "tokens generated per second over the last %d "
                                    "answers" % RECENT_ANSWERS, value=rate)
        requests = CounterMetricFamily(PREFIX + "requests", "API responses by HTTP status", labels=["status"])
        for status, count in sorted(dict(server.statuses).items()):
            requests.add_metric([str(status)], count)
        yield requests
        follower = self.process.follower
        if follower is not None:
            yield CounterMetricFamily(PREFIX + "frames_received", "camera frames received on the token stream",
                                      value=follower.received)
