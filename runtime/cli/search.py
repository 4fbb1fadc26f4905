"""`fusembed search BUNDLE --query TEXT --docs FILE`: rank documents against a query."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._errors import ArgumentError, InputError
from .._similarity import cos_sim, dot_score, semantic_search
from ._options import (
    add_bundle,
    add_encoder_options,
    add_prompt_options,
    add_text_input,
    add_truncate_dim,
    default,
    encoder,
    input_texts,
    positive_int,
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("search", help="rank documents from a file against a query")
    add_bundle(p)
    add_encoder_options(p)
    p.add_argument("--query", required=True, help="the query text")
    add_text_input(p, "--docs", "documents")
    add_prompt_options(p, prefix="query", who="the query")
    add_prompt_options(p, prefix="doc", who="each document")
    add_truncate_dim(p)
    p.add_argument("--top-k", type=positive_int, default=default(semantic_search, "top_k"),
                   help="results to print (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of 'score document' lines")
    return p


def run(args: argparse.Namespace) -> int:
    # A blank line is no document: it is left out, and corpus_id stays the line's number.
    lines = input_texts(args)
    kept = [i for i, text in enumerate(lines) if text.strip()]
    docs = [lines[i] for i in kept]
    if not docs:
        raise InputError(f"{args.input}: no documents to search")
    model = encoder(args)
    prompts = {}
    for who in ("query", "doc"):  # both checked before anything is embedded, each by its own flag
        try:
            prompts[who] = model.prompt_for(getattr(args, f"{who}_prompt_name"),
                                            getattr(args, f"{who}_prompt"))
        except ArgumentError as exc:
            raise ArgumentError(f"{who}_{exc.param}", exc.problem) from None
    query_emb = model.encode(args.query, prompt=prompts["query"])
    doc_emb = model.encode(docs, batch_size=args.batch_size, prompt=prompts["doc"])
    score = dot_score if model.similarity == "dot" else cos_sim
    hits = semantic_search(query_emb, doc_emb, top_k=args.top_k, score_function=score)[0]
    if args.json:
        print(json.dumps([{"score": h["score"], "corpus_id": kept[h["corpus_id"]],
                           "document": docs[h["corpus_id"]]} for h in hits], ensure_ascii=False))
        return 0
    print("Query:", args.query)
    for hit in hits:
        print(f"{hit['score']:.4f}", docs[hit["corpus_id"]])
    return 0
