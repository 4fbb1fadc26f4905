"""Messages between the HTTP workers and the model process of `fusembed serve --workers N`.

ZeroMQ carries them: a DEALER socket in each worker, a ROUTER in the model process (which prefixes
each message with the sending worker's identity and routes the reply back by it), over an ipc://
socket in a private temporary directory. Nothing is ever unpickled: token ids travel as uint32
arrays, vectors as float32 bytes, behind fixed struct headers, and errors as a small JSON object.

Every message is one frame: ZeroMQ's cost is per frame and per message, not per byte, and the
model process, the one process every request passes through, pays it for every message. So each
end sends what it has ready at the same moment as one message (`Channel.post`): a worker, the
requests its event loop tokenized in one pass; the model process, the replies a batch finished
for that worker. Each end drives its socket with a `Channel`, not pyzmq's asyncio sockets, which
make a future and an event registration for every message.

The workers tokenize (each has the bundle's tokenizer), so that the model process does no
per-text work but the model's.

    worker -> model, one or more requests, each:  kind (1 byte), request id (uint64), the
    payload's length (uint32), payload
        EMBED    payload: the number of texts and the prompt's length in bytes (uint32 each), the
                 prompt the texts start with (UTF-8, empty for none), the token count of each text
                 and all their token ids, one after another, as uint32 (texts checked, prompts
                 applied and tokenized by the worker)
        CANCEL   the worker gave the request up (its client left, or its grace period ran out)
        HEALTH   asks for the queue depth
        METRICS  asks for the model's Prometheus text
    model -> worker, one or more replies, each:  request id (uint64), status (1 byte), the body's
    length (uint32), body
        OK       EMBED: rows, dim (uint32 each), prompt tokens (uint64) and the vectors, row-major;
                 HEALTH: the queue depth in decimal; METRICS: the text
        ERROR    {"code": ..., "message": ...} as JSON
"""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import traceback
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import zmq

from ._batcher import Embeddings

EMBED, CANCEL, HEALTH, METRICS = b"E", b"C", b"H", b"M"
OK, ERROR = b"0", b"1"

_REQUEST = struct.Struct("<cQI")  # kind, request id, payload bytes
_EMBED = struct.Struct("<II")  # texts, prompt bytes
_REPLY = struct.Struct("<QcI")  # request id, status, body bytes
_VECTORS = struct.Struct("<IIQ")  # rows, dim, prompt tokens


def request(kind: bytes, number: int, payload: bytes = b"") -> bytes:
    return _REQUEST.pack(kind, number, len(payload)) + payload


def embed_payload(prompt: str, rows: list[list[int]]) -> bytes:
    encoded = prompt.encode()
    lengths = [len(row) for row in rows]
    ids = np.fromiter(itertools.chain.from_iterable(rows), dtype="<u4", count=sum(lengths))
    return b"".join((_EMBED.pack(len(rows), len(encoded)), encoded,
                     np.array(lengths, dtype="<u4").tobytes(), ids.tobytes()))


class CutRecord(ValueError):
    """A request or reply that runs past the end of its message. `number` is its request id, to
    answer it by, when its header is whole; None when not even that is."""

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.number = number


def _records(frame: bytes, header: struct.Struct, what: str,
             number_field: int) -> Iterator[tuple[tuple[object, ...], memoryview]]:
    """The header fields and body of each record (request or reply) in a message, one after
    another; the header's last field is the body's length. Raises `CutRecord` at the first one
    that runs past the message, after yielding those before it."""
    view, at = memoryview(frame), 0
    while at < len(view):
        if at + header.size > len(view):
            raise CutRecord(f"a {what} header at byte {at} runs past the message's {len(view)} bytes")
        fields = header.unpack_from(view, at)
        at += header.size
        size = cast(int, fields[-1])
        if at + size > len(view):
            raise CutRecord(f"a {what} of {size} bytes at byte {at} runs past the message's {len(view)}",
                            cast(int, fields[number_field]))
        yield fields, view[at:at + size]
        at += size


def read_requests(frame: bytes) -> Iterator[tuple[bytes, int, memoryview]]:
    """Kind, request id and payload of each request in a worker's message (see `_records`)."""
    for (kind, number, _), payload in _records(frame, _REQUEST, "request", 1):
        yield cast(bytes, kind), cast(int, number), payload


def read_embed(payload: memoryview) -> tuple[str, list[list[int]]]:
    """The prompt and the token id rows of an EMBED payload. Raises ValueError when its sizes do
    not add up."""
    if len(payload) < _EMBED.size:
        raise ValueError(f"an EMBED payload of {len(payload)} bytes is too short")
    texts, prompt_bytes = _EMBED.unpack_from(payload)
    start = _EMBED.size + prompt_bytes
    lengths_end = start + 4 * texts
    if lengths_end > len(payload) or (len(payload) - lengths_end) % 4:
        raise ValueError(f"an EMBED payload of {len(payload)} bytes cannot hold {texts} texts "
                         f"and a prompt of {prompt_bytes} bytes")
    prompt = bytes(payload[_EMBED.size:start]).decode()
    counts: list[int] = np.frombuffer(payload, dtype="<u4", count=texts, offset=start).tolist()
    values: list[int] = np.frombuffer(payload, dtype="<u4", offset=lengths_end).tolist()
    if len(values) != sum(counts):
        raise ValueError(f"a worker sent {len(values)} token ids for texts of {sum(counts)} tokens")
    rows, at = [], 0
    for count in counts:
        rows.append(values[at:at + count])
        at += count
    return prompt, rows


def reply(number: int, status: bytes, body: bytes) -> bytes:
    return _REPLY.pack(number, status, len(body)) + body


def read_replies(frame: bytes) -> Iterator[tuple[int, bytes, memoryview]]:
    """Request id, status and body of each reply in a message from the model process (see
    `_records`)."""
    for (number, status, _), body in _records(frame, _REPLY, "reply", 0):
        yield cast(int, number), cast(bytes, status), body


def vectors_body(vectors: Embeddings, prompt_tokens: int) -> bytes:
    rows, dim = vectors.shape
    little = np.ascontiguousarray(vectors, dtype="<f4")
    return _VECTORS.pack(rows, dim, prompt_tokens) + little.tobytes()


def read_vectors(body: memoryview | bytes) -> tuple[Embeddings, int]:
    rows, dim, prompt_tokens = _VECTORS.unpack_from(body)
    vectors = np.frombuffer(body, dtype="<f4", offset=_VECTORS.size)
    if vectors.size != rows * dim:
        raise ValueError(f"the model process sent {vectors.size} floats for {rows} x {dim} vectors")
    # a copy: aligned, writable, and not holding the whole message's buffer
    return vectors.reshape(rows, dim).astype(np.float32), int(prompt_tokens)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def read_error(body: memoryview | bytes) -> tuple[str, str]:
    error = json.loads(bytes(body))
    return str(error["code"]), str(error["message"])


class Channel:
    """A ZeroMQ socket on an asyncio event loop, one callback per message and no future.

    `on_message` gets each message's frames as it arrives, on the loop. `post` queues a record
    (a request or a reply) for a peer: the records posted by the time the loop gets to the flush
    that the first one scheduled go out as one message per peer. Under load a worker's loop
    tokenizes several requests in one pass, and a batch's futures all finish at once, so each end
    pays ZeroMQ's cost per message rather than per record. A send that fails (the socket closed)
    goes to `on_send_error`, since nothing will answer the records it held.

    A socket's high-water marks are lifted: a ROUTER would otherwise drop a reply to a worker that
    has a thousand waiting, and a request may never be dropped or block the loop. What is queued
    is bounded elsewhere: by the requests the workers have in flight.

    ZeroMQ signals its file descriptor on edges: after every receive and send the socket is
    checked again, and everything waiting is read, or the descriptor might never signal again.
    """

    def __init__(self, socket: zmq.Socket[bytes], on_message: Callable[[list[bytes]], None], *,
                 on_send_error: Callable[[zmq.ZMQError], None] | None = None) -> None:
        self.socket, self.on_message, self.on_send_error = socket, on_message, on_send_error
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = cast(int, socket.getsockopt(zmq.FD))
        self._scheduled = False
        self._outbox: dict[bytes | None, list[bytes]] = {}  # records to flush, by peer

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._drain)
        self._drain_soon()  # messages that came before the reader was added

    def post(self, record: bytes, peer: bytes | None = None) -> None:
        """Queue `record` for `peer` (a ROUTER's identity of it; None on a DEALER, which has one)."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.setdefault(peer, []).append(record)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None
        self.socket.close(linger=0)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for peer, records in outbox.items():
            message = b"".join(records)
            try:
                self.socket.send_multipart([message] if peer is None else [peer, message], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                if self.on_send_error is None:
                    raise
                self.on_send_error(exc)
        self._drain_soon()

    def _drain_soon(self) -> None:
        if self._loop is not None and not self._scheduled and self._readable():
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _readable(self) -> bool:
        return bool(cast(int, self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def _drain(self) -> None:
        self._scheduled = False
        while self._loop is not None and self._readable():
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.on_message(frames)
            except Exception:  # a bug: logged, and the messages behind it are still read
                traceback.print_exc()
