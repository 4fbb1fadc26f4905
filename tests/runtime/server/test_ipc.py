"""The frames the HTTP workers and the model process of `serve --workers N` exchange."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import numpy as np
import pytest
from fusembed import Encoder
from fusembed._tokens import TextTokenizer
from fusembed.server import ServerOptions, _ipc, _owner, _worker


@pytest.mark.parametrize("rows", [[[101, 7592, 102]], [[101, 102], [101, 2, 3, 4, 102], [0]], []])
@pytest.mark.parametrize("prompt", ["", "query: ", "質問: "])
def test_an_embed_request_arrives_as_it_was_sent(rows: list[list[int]], prompt: str) -> None:
    message = _ipc.request(_ipc.EMBED, 2**40 + 3, _ipc.embed_payload(prompt, rows))
    [(kind, number, payload)] = _ipc.read_requests(message)
    assert (kind, number) == (_ipc.EMBED, 2**40 + 3)
    assert _ipc.read_embed(payload) == (prompt, rows)


def test_ids_past_int16_and_near_uint32_survive() -> None:
    rows = [[0, 65535, 65536, 250_001], [2**32 - 1]]
    [(_, _, payload)] = _ipc.read_requests(_ipc.request(_ipc.EMBED, 1, _ipc.embed_payload("", rows)))
    assert _ipc.read_embed(payload) == ("", rows)


@pytest.mark.parametrize("rows", [[[1, 2, 3]], [[1, 2, 3], [4]]])
def test_ids_that_do_not_add_up_to_the_lengths_are_refused(rows: list[list[int]]) -> None:
    payload = _ipc.embed_payload("", rows)
    tokens = sum(map(len, rows))
    with pytest.raises(ValueError, match=f"{tokens - 1} token ids for texts of {tokens} tokens"):
        _ipc.read_embed(memoryview(payload[:-4]))


@pytest.mark.parametrize("cut", [0, 4, 8, 11])
def test_an_embed_payload_too_short_for_its_header_is_refused(cut: int) -> None:
    payload = _ipc.embed_payload("query: ", [[1, 2], [3]])[:cut]
    with pytest.raises(ValueError, match=r"too short|cannot hold"):
        _ipc.read_embed(memoryview(payload))


def test_several_requests_in_one_message_arrive_as_they_were_sent() -> None:
    sent = [(_ipc.EMBED, 5, _ipc.embed_payload("", [[101, 102]])), (_ipc.CANCEL, 3, b""),
            (_ipc.HEALTH, 2**63, b""), (_ipc.EMBED, 6, _ipc.embed_payload("q: ", [[1], [2, 3]]))]
    message = b"".join(_ipc.request(*one) for one in sent)
    assert [(kind, number, bytes(payload)) for kind, number, payload in _ipc.read_requests(message)] == sent


def test_a_cut_request_message_yields_the_requests_before_the_cut_then_names_the_cut_one() -> None:
    whole = _ipc.request(_ipc.EMBED, 5, _ipc.embed_payload("", [[101, 102]]))
    cut = _ipc.request(_ipc.EMBED, 6, _ipc.embed_payload("", [[101, 102]]))
    got = []
    with pytest.raises(_ipc.CutRecord, match="runs past") as payload_cut:
        got.extend(number for _, number, _ in _ipc.read_requests(whole + cut[:-1]))
    assert (got, payload_cut.value.number) == ([5], 6)
    with pytest.raises(_ipc.CutRecord, match="request header at byte") as header_cut:
        list(_ipc.read_requests(whole + cut[:12]))
    assert header_cut.value.number is None


def test_several_replies_in_one_message_arrive_as_they_were_sent() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    message = b"".join([
        _ipc.reply(7, _ipc.OK, _ipc.vectors_body(vectors, 17)),
        _ipc.reply(9, _ipc.ERROR, _ipc.error_body("server_overloaded", "retry shortly")),
        _ipc.reply(2**63, _ipc.OK, b"12"),
    ])
    (n1, s1, b1), (n2, s2, b2), (n3, s3, b3) = _ipc.read_replies(message)
    back, tokens = _ipc.read_vectors(b1)
    np.testing.assert_array_equal(back, vectors)
    assert (n1, s1, tokens, back.flags.writeable) == (7, _ipc.OK, 17, True)
    assert (n2, s2, _ipc.read_error(b2)) == (9, _ipc.ERROR, ("server_overloaded", "retry shortly"))
    assert (n3, s3, bytes(b3)) == (2**63, _ipc.OK, b"12")


def test_a_cut_reply_message_is_refused() -> None:
    message = _ipc.reply(7, _ipc.OK, b"0123456789")
    with pytest.raises(ValueError, match="runs past"):
        list(_ipc.read_replies(message[:-1]))
    with pytest.raises(ValueError, match="runs past"):
        list(_ipc.read_replies(message + message[:5]))


def test_a_channel_reads_every_message_and_one_that_fails_does_not_stop_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Many messages sent at once arrive in order, replies posted from the callback reach the
    other end, and a message whose handler raises is logged while the ones behind it are still
    read (the socket signals only on edges: one left unread would never be seen)."""
    import zmq

    async def main() -> tuple[list[bytes], list[int]]:
        context = zmq.Context()
        got: list[bytes] = []
        echoed: list[int] = []
        router = _ipc.Channel(context.socket(zmq.ROUTER), lambda frames: None)
        router.socket.bind("inproc://test-channel")

        def on_request(frames: list[bytes]) -> None:
            if frames[1] == b"bad":
                raise RuntimeError("a handler's bug")
            got.append(frames[1])
            router.post(_ipc.reply(int(frames[1]), _ipc.OK, b"echo"), frames[0])

        router.on_message = on_request
        dealer = _ipc.Channel(context.socket(zmq.DEALER), lambda frames: echoed.extend(
            number for number, _, _ in _ipc.read_replies(frames[0])))
        dealer.socket.connect("inproc://test-channel")
        router.start()
        dealer.start()
        for i in range(500):  # 500 messages of their own, straight through the socket
            dealer.socket.send(b"bad" if i == 3 else str(i).encode(), zmq.NOBLOCK)
        for _ in range(200):
            if len(echoed) == 499:
                break
            await asyncio.sleep(0.01)
        router.close()
        dealer.close()
        context.term()
        return got, echoed

    got, echoed = asyncio.run(main())
    assert got == [str(i).encode() for i in range(500) if i != 3]
    assert echoed == [i for i in range(500) if i != 3]
    assert "a handler's bug" in capsys.readouterr().err


def test_the_records_posted_in_one_pass_of_the_loop_go_to_each_peer_as_one_message() -> None:
    """Three records posted at once to one peer arrive as one message, in order; a record for
    another peer in the same pass goes in a message of its own; one posted after the flush goes
    in the next message."""
    import zmq

    async def main() -> list[list[bytes]]:
        context = zmq.Context()
        router = context.socket(zmq.ROUTER)
        router.bind("inproc://test-post")
        dealers = [_ipc.Channel(context.socket(zmq.DEALER), lambda frames: None) for _ in range(2)]
        for index, dealer in enumerate(dealers):
            dealer.socket.setsockopt(zmq.IDENTITY, b"d%d" % index)
            dealer.socket.connect("inproc://test-post")
            dealer.start()
        for number in range(3):
            dealers[0].post(_ipc.reply(number, _ipc.OK, b"a"))
        dealers[1].post(_ipc.reply(9, _ipc.OK, b"b"))
        await asyncio.sleep(0)  # the flush the first post scheduled
        dealers[0].post(_ipc.reply(3, _ipc.OK, b"c"))
        await asyncio.sleep(0)
        received = [router.recv_multipart() for _ in range(3)]
        assert router.poll(100) == 0, "no fourth message"
        for dealer in dealers:
            dealer.close()
        router.close(linger=0)
        context.term()
        return received

    by_peer: dict[bytes, list[list[int]]] = {}
    for peer, message in asyncio.run(main()):
        by_peer.setdefault(peer, []).append([number for number, _, _ in _ipc.read_replies(message)])
    assert by_peer == {b"d0": [[0, 1, 2], [3]], b"d1": [[9]]}


def test_a_send_that_fails_goes_to_on_send_error_or_raises_without_one() -> None:
    import zmq

    async def main() -> None:
        context = zmq.Context()
        errors: list[zmq.ZMQError] = []
        handled = _ipc.Channel(context.socket(zmq.DEALER), lambda frames: None, on_send_error=errors.append)
        bare = _ipc.Channel(context.socket(zmq.DEALER), lambda frames: None)
        for channel in (handled, bare):
            channel.start()
            channel.close()  # the socket is gone: every send fails
            channel.post(_ipc.request(_ipc.HEALTH, 1))
        handled._flush()
        assert len(errors) == 1 and errors[0].errno == zmq.ENOTSOCK
        with pytest.raises(zmq.ZMQError):
            bare._flush()
        context.term()

    asyncio.run(main())


def test_the_model_process_answers_a_malformed_embed_request_with_an_error(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """A request it cannot read (a worker of another fusembed) gets an error reply, and the model
    process goes on with the next one; a request too short to name itself is dropped; the requests
    of one message are all served."""
    with socket.socket() as listener:
        owner = _owner._Owner(Encoder(tiny_bundle), ServerOptions(), listener, tmp_path)
    good = _ipc.embed_payload("", [[101, 7, 102]])
    posted: list[tuple[bytes, bytes]] = []

    class Channel:
        def post(self, record: bytes, peer: bytes | None = None) -> None:
            assert peer is not None
            posted.append((peer, record))

    async def main() -> None:
        owner.channel = Channel()  # type: ignore[assignment]
        await owner.model.start()
        for frames in [
            [b"w1", _ipc.request(_ipc.EMBED, 1, good[:6])],  # cut inside its header
            [b"w1", _ipc.request(_ipc.EMBED, 2, good[:-4])],  # ids short of the lengths
            [b"w1", b"E1"],  # no request id: nothing to answer
            [b"w1"],  # not a message of this protocol
            [b"w2", _ipc.request(_ipc.EMBED, 3, good)],
            [b"w3", _ipc.request(_ipc.EMBED, 4, good) + _ipc.request(_ipc.EMBED, 5, good)[:-1]],  # cut
            [b"w3", _ipc.request(_ipc.EMBED, 6, good) + _ipc.request(_ipc.HEALTH, 7)],
        ]:
            owner._on_message(frames)
        await asyncio.sleep(0.5)
        await owner.model.stop()

    asyncio.run(main())
    by_worker: dict[bytes, list[tuple[int, bytes, memoryview]]] = {}
    for worker, record in posted:
        by_worker.setdefault(worker, []).extend(_ipc.read_replies(record))
    assert [(number, status) for number, status, _ in by_worker[b"w1"]] == [(1, _ipc.ERROR), (2, _ipc.ERROR)]
    code, message = _ipc.read_error(by_worker[b"w1"][0][2])
    assert code == "internal_error" and "too short" in message
    code, message = _ipc.read_error(by_worker[b"w1"][1][2])
    assert code == "internal_error" and "2 token ids for texts of 3 tokens" in message
    [(number, status, body)] = by_worker[b"w2"]
    vectors, tokens = _ipc.read_vectors(body)
    assert (number, status, tokens) == (3, _ipc.OK, 3)
    np.testing.assert_allclose(vectors, owner.model.encoder._encode_batch([[101, 7, 102]]), rtol=1e-6)
    replies = {number: (status, body) for number, status, body in by_worker[b"w3"]}
    assert sorted(replies) == [4, 5, 6, 7]
    assert [replies[number][0] for number in (4, 5, 6, 7)] == [_ipc.OK, _ipc.ERROR, _ipc.OK, _ipc.OK]
    assert "runs past" in _ipc.read_error(replies[5][1])[1]
    np.testing.assert_array_equal(_ipc.read_vectors(replies[6][1])[0], vectors)
    assert bytes(replies[7][1]).isdigit()


def _remote_model(bundle: Path) -> _worker.RemoteModel:
    """A worker's model, not started: replies are handed to it directly."""
    tokenizer = TextTokenizer(bundle / "tokenizer.json", Encoder(bundle).max_seq_length)
    return _worker.RemoteModel("ipc://unused", tokenizer, on_gone=lambda: None)


def test_a_malformed_reply_fails_the_waiting_requests_instead_of_leaving_them_hanging(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The replies before the fault are delivered; every other request still waiting fails at
    once (its client gets a 500), since its reply may have been in the unreadable part."""
    model = _remote_model(tiny_bundle)

    async def main() -> list[asyncio.Future[tuple[bytes, memoryview]]]:
        loop = asyncio.get_running_loop()
        waiting = [loop.create_future() for _ in range(3)]
        model._replies.update(enumerate(waiting))
        good = _ipc.reply(0, _ipc.OK, b"12")
        model._on_reply([good + _ipc.reply(1, _ipc.OK, b"0123456789")[:-1]])
        return waiting

    first, second, third = asyncio.run(main())
    status, body = first.result()
    assert (status, bytes(body)) == (_ipc.OK, b"12")
    for failed in (second, third):
        with pytest.raises(RuntimeError, match=r"malformed reply: a reply of 10 bytes .* runs past"):
            failed.result()
    assert second.exception() is not third.exception(), "an exception of its own for each request"
    assert "malformed reply" in capsys.readouterr().err


def test_a_reply_of_several_frames_fails_the_waiting_requests(tiny_bundle: Path) -> None:
    model = _remote_model(tiny_bundle)

    async def main() -> asyncio.Future[tuple[bytes, memoryview]]:
        waiting = asyncio.get_running_loop().create_future()
        model._replies[0] = waiting
        model._on_reply([_ipc.reply(0, _ipc.OK, b"12"), b"extra"])
        return waiting

    with pytest.raises(RuntimeError, match="a message of 2 frames"):
        asyncio.run(main()).result()


def test_requests_that_cannot_be_sent_fail_instead_of_waiting(tiny_bundle: Path) -> None:
    """The worker's socket closed under its requests: each fails (500) with an exception of its
    own, rather than waiting for a reply that cannot come."""
    model = _remote_model(tiny_bundle)

    async def main() -> list[BaseException | tuple[bytes, memoryview]]:
        import zmq

        context = zmq.Context()
        model._channel = _ipc.Channel(context.socket(zmq.DEALER), model._on_reply,
                                      on_send_error=model._not_sent)
        model._channel.start()
        model._channel.close()
        calls = (model._call(_ipc.HEALTH), model._call(_ipc.HEALTH))
        results = await asyncio.gather(*calls, return_exceptions=True)
        context.term()
        return results

    results = asyncio.run(main())
    assert len(results) == 2
    for result in results:
        assert isinstance(result, RuntimeError) and "could not reach the model process" in str(result)
    assert results[0] is not results[1]
    assert not model._replies
