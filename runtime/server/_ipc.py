"""Messages between the HTTP workers and the model process of `fusembed serve --workers N`.

ZeroMQ carries them: a DEALER socket in each worker, a ROUTER in the model process (which prefixes
each message with the sending worker's identity and routes the reply back by it), over an ipc://
socket in a private temporary directory. A message is a ZeroMQ multipart message, and no frame is
ever unpickled: token ids travel as uint32 arrays, vectors as float32 bytes, with a fixed struct
header, and errors as a small JSON object.

The workers tokenize (each has the bundle's tokenizer), so that the model process, the one
process every request passes through, does no per-text work but the model's.

    worker -> model:  [kind, request id, *payload]
        EMBED    payload: the prompt the texts start with ("" for none), the token count of each
                 text, and all their token ids, one after another (texts checked, prompts
                 applied and tokenized by the worker)
        CANCEL   the worker gave the request up (its client left, or its grace period ran out)
        HEALTH   asks for the queue depth
        METRICS  asks for the model's Prometheus text
    model -> worker:  [request id, status, *payload]
        OK       EMBED: header (rows, dim, prompt tokens) and the vectors, row-major;
                 HEALTH: the queue depth in decimal; METRICS: the text
        ERROR    {"code": ..., "message": ...} as JSON
"""

from __future__ import annotations

import itertools
import json
import struct

import numpy as np

from ._batcher import Embeddings

EMBED, CANCEL, HEALTH, METRICS = b"E", b"C", b"H", b"M"
OK, ERROR = b"0", b"1"

_ID = struct.Struct("<Q")
_VECTORS = struct.Struct("<IIQ")  # rows, dim, prompt tokens


def request_id(number: int) -> bytes:
    return _ID.pack(number)


def read_request_id(frame: bytes) -> int:
    return int(_ID.unpack(frame)[0])


def rows_payload(rows: list[list[int]]) -> list[bytes]:
    lengths = np.fromiter(map(len, rows), dtype="<u4", count=len(rows))
    ids = np.fromiter(itertools.chain.from_iterable(rows), dtype="<u4", count=int(lengths.sum()))
    return [lengths.tobytes(), ids.tobytes()]


def read_rows(lengths: bytes, ids: bytes) -> list[list[int]]:
    counts = np.frombuffer(lengths, dtype="<u4")
    flat = np.frombuffer(ids, dtype="<u4")
    if flat.size != int(counts.sum(dtype=np.int64)):
        raise ValueError(f"a worker sent {flat.size} token ids for texts of {counts.sum()} tokens")
    values: list[int] = flat.tolist()
    bounds: list[int] = [0, *np.cumsum(counts).tolist()]
    return [values[start:end] for start, end in itertools.pairwise(bounds)]


def vectors_payload(vectors: Embeddings, prompt_tokens: int) -> list[bytes]:
    rows, dim = vectors.shape
    little = np.ascontiguousarray(vectors, dtype="<f4")
    return [_VECTORS.pack(rows, dim, prompt_tokens), little.tobytes()]


def read_vectors(header: bytes, data: bytes | memoryview) -> tuple[Embeddings, int]:
    rows, dim, prompt_tokens = _VECTORS.unpack(header)
    vectors = np.frombuffer(data, dtype="<f4")
    if vectors.size != rows * dim:
        raise ValueError(f"the model process sent {vectors.size} floats for {rows} x {dim} vectors")
    return vectors.reshape(rows, dim).astype(np.float32, copy=False), int(prompt_tokens)


def error_payload(code: str, message: str) -> list[bytes]:
    return [json.dumps({"code": code, "message": message}).encode()]


def read_error(data: bytes) -> tuple[str, str]:
    error = json.loads(data)
    return str(error["code"]), str(error["message"])
