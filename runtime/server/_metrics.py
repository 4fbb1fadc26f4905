"""The server's Prometheus metrics, on a registry of its own (prometheus_client's global one would
mix in whatever else the process registers, and two servers in one process would collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._batcher import BatchStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class Metrics:
    """Counters and histograms for `/metrics`; the app and the batcher update them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fusembed_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.errors = Counter("fusembed_request_errors", "Error responses, by OpenAI error type",
                              ["type"], registry=r)
        self.latency = Histogram("fusembed_request_duration_seconds",
                                 "Time from request to response, by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("fusembed_requests_in_flight", "Requests being handled", registry=r)
        self.queue_depth = Gauge("fusembed_queue_depth", "Embedding requests waiting for a batch", registry=r)
        self.batch_requests = Histogram("fusembed_batch_requests", "Requests per model batch",
                                        buckets=_COUNT_BUCKETS, registry=r)
        self.batch_texts = Histogram("fusembed_batch_texts", "Texts per model batch",
                                     buckets=_COUNT_BUCKETS, registry=r)
        self.batch_tokens = Histogram("fusembed_batch_tokens", "Tokens per model batch (no padding)",
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("fusembed_batch_duration_seconds", "Model time per batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.texts = Counter("fusembed_embedded_texts", "Texts embedded", registry=r)
        self.tokens = Counter("fusembed_prompt_tokens", "Tokens embedded (usage.prompt_tokens)", registry=r)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_texts.observe(stats.texts)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)
        self.texts.inc(stats.texts)
        self.tokens.inc(stats.tokens)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
