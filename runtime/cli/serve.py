"""`fusembed serve BUNDLE`: an OpenAI-compatible HTTP server (serve extra)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ._options import (
    add_bundle,
    add_encoder_options,
    add_prompt_options,
    add_truncate_dim,
    default,
    non_negative_float,
    non_negative_int,
    port,
    positive_int,
)

try:  # the defaults, read once from the server's own options and `run`'s signature
    from .. import server as _server
except ImportError:  # without the serve extra the command still shows its options, then says so
    _OPTIONS, _LIMITS, _RUN = None, None, dict.fromkeys(("host", "port", "graceful_timeout_s"))
else:
    _OPTIONS = _server.ServerOptions()
    _LIMITS = _OPTIONS.limits
    _RUN = {name: default(_server.run, name) for name in ("host", "port", "graceful_timeout_s")}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    d, limits, run_defaults = _OPTIONS, _LIMITS, _RUN
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve a bundle over HTTP, OpenAI-compatible (needs the serve extra)",
        description="POST /v1/embeddings (OpenAI's API), GET /v1/models, /health, /metrics. Concurrent "
        "requests are batched. SIGTERM lets in-flight requests finish (up to --graceful-timeout; past "
        "it, and for new requests, the answer is 503).")
    add_bundle(p)
    p.add_argument("--host", default=run_defaults["host"],
                   help="address to bind (default: %(default)s, this machine only; 0.0.0.0 for all)")
    p.add_argument("--port", type=port, default=run_defaults["port"], help="TCP port (default: %(default)s)")
    add_encoder_options(p, batch_size=False)
    add_prompt_options(p, who="each input when a request names no prompt_name")
    add_truncate_dim(p)
    p.add_argument("--model-name", help="the 'model' clients send (default: the bundle's model name)")
    p.add_argument("--api-key", default=os.environ.get("FUSEMBED_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health "
                   "(default: $FUSEMBED_API_KEY, else no key)")
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="run each request as its own model call (for comparison)")
    p.add_argument("--max-batch-tokens", type=positive_int, default=d and d.max_batch_tokens,
                   help="padded tokens per model call; concurrent requests share a call up to this "
                   "(default: %(default)s)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=d and d.max_wait_ms,
                   help="how long a request waits for others to join its batch (default: %(default)s)")
    p.add_argument("--max-queued", type=positive_int, default=d and d.max_queued,
                   help="requests waiting for the model; past it a request gets 503 (default: %(default)s)")
    p.add_argument("--max-inputs", type=positive_int, default=limits and limits.max_inputs,
                   help="inputs per request (default: %(default)s)")
    p.add_argument("--max-input-chars", type=positive_int, default=limits and limits.max_input_chars,
                   help="characters per input (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=positive_int, default=limits and limits.max_body_bytes,
                   help="request body size; larger gets 413 (default: %(default)s)")
    p.add_argument("--graceful-timeout", dest="graceful_timeout_s", type=non_negative_int,
                   default=run_defaults["graceful_timeout_s"], metavar="SECONDS",
                   help="after SIGTERM, how long requests in flight may take to finish; those still "
                   "running then get 503 (default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="HTTP worker processes in front of the one process that runs the model and "
                   "batches for all of them; more than 1 helps where one Python process cannot keep "
                   "the model busy (default: %(default)s: one process does everything)")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..server import Limits, ServerOptions, model_names, run  # ImportError names the extra
    from ._options import encoder

    # The model's threads share the cores with the event loop and the tokenizer: busy-waiting
    # between batches would take CPU from them (on two cores it halved the requests served).
    model = encoder(args, thread_spinning=False)
    options = ServerOptions(
        model_name=args.model_name, api_key=args.api_key or None, batching=args.batching,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_queued=args.max_queued,
        limits=Limits(max_inputs=args.max_inputs, max_input_chars=args.max_input_chars,
                      max_body_bytes=args.max_body_bytes),
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not options.api_key:
        print(f"fusembed serve: warning: listening on {args.host} with no --api-key; "
              "anyone who can reach this port can use it", file=sys.stderr)
    batching = (f"batching up to {args.max_batch_tokens} tokens or {args.max_wait_ms:g} ms"
                if args.batching else "batching off")
    workers = f", {args.workers} HTTP workers" if args.workers > 1 else ""
    print(f"fusembed serve: model {model_names(model, options)[0]!r} ({model.precision}, "
          f"{model.device}, {batching}{workers}) on http://{args.host}:{args.port}/v1/embeddings",
          file=sys.stderr, flush=True)
    run(model, options, host=args.host, port=args.port, graceful_timeout_s=args.graceful_timeout_s,
        access_log=args.access_log, workers=args.workers)
    return 0
