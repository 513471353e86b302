"""The aioquic seam: its self-test, the rule that nothing else touches aioquic's private state,
the O(1) send backlog, and the batched (GSO) transmit path on real sockets."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import aioquic
import pytest
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from moq.transport import aioquic_seam as seam
from moq.transport import udp
from moq.transport.base import StreamData
from moq.transport.stats import STATS

from .test_support import KINDS, run_async, session_pair

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = ROOT / "moq" / "transport"


def test_self_test_passes_on_the_pinned_aioquic():
    seam.self_test()
    pin = re.search(r'"aioquic([^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pin == "==1.7.*" and aioquic.__version__.startswith("1.7.")


def test_self_test_names_what_is_missing(monkeypatch):
    monkeypatch.delattr(QuicConnectionProtocol, "_process_events")
    with pytest.raises(seam.SeamError, match=r"QuicConnectionProtocol\._process_events"):
        seam.self_test()


def test_self_test_refuses_another_version(monkeypatch):
    monkeypatch.setattr(aioquic, "__version__", "2.0.0")
    with pytest.raises(seam.SeamError, match="aioquic 2.0.0 installed, 1.7.x required"):
        seam.self_test()


def _own_names(trees: list[ast.Module]) -> set[str]:
    """Attribute, method and class-level names that moq/transport defines itself."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_no_private_aioquic_state_outside_the_seam():
    """Every `x._name` in moq/transport (outside the seam) names our own attribute: aioquic's
    private state and private methods (including via super()) are reached only through the seam."""
    files = [p for p in sorted(TRANSPORT.glob("*.py")) if p.name != "aioquic_seam.py"]
    trees = [ast.parse(p.read_text(), str(p)) for p in files]
    own = _own_names(trees)
    bad: list[str] = []
    for path, tree in zip(files, trees):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            via_super = isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "super"
            if via_super or node.attr not in own:
                bad.append(f"{path.name}:{node.lineno}: .{node.attr}")
        for node in ast.walk(tree):  # getattr(x, "_private") is the same reach
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr" and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")
                    and node.args[1].value not in own):
                bad.append(f"{path.name}:{node.lineno}: getattr {node.args[1].value}")
    assert not bad, "aioquic private state used outside moq/transport/aioquic_seam.py:\n" + "\n".join(bad)


def test_send_queue_stays_ordered_without_sorting_on_read():
    quic = seam.tune_connection(QuicConnection(configuration=QuicConfiguration(is_client=True)))
    for sid in (2, 6, 10, 14):
        quic.send_stream_data(sid, b"x")
    quic.set_stream_priority(10, (2, 5))
    quic.set_stream_priority(2, (2, 1))
    queue = quic._streams_queue
    assert [s.stream_id for s in queue] == [6, 14, 2, 10]
    assert quic._streams_queue is queue  # reading returns the kept list, nothing is sorted per read
    # aioquic's rebuild after a packet: unserved streams, then it extends with the served ones
    quic._streams_queue = [quic._streams[10]]
    quic._streams_queue.extend([quic._streams[2], quic._streams[6]])
    assert [s.stream_id for s in quic._streams_queue] == [6, 2, 10]


def test_backlog_counts_written_bytes_and_forgets_reset_streams():
    quic = seam.tune_connection(QuicConnection(configuration=QuicConfiguration(is_client=True)))
    quic.send_stream_data(2, bytes(1000))
    quic.send_stream_data(6, bytes(500))
    assert quic.moq_backlog.unacked == 1500
    quic.reset_stream(6, 0)
    assert quic.moq_backlog.unacked == 1000
    quic.reset_stream(6, 0)  # a second reset changes nothing
    assert quic.moq_backlog.unacked == 1000


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_backlog_drains_as_the_peer_acknowledges(kind):
    async def main() -> None:
        async with session_pair(kind) as (client, server, _):
            sid = client.session.open_stream(unidirectional=True)
            client.session.send_stream_data(sid, bytes(300_000), end_stream=True)
            assert client.session.send_backlog() >= 250_000  # less whatever control data is in flight
            await server.wait(lambda: server.finished(sid))
            deadline = asyncio.get_running_loop().time() + 20
            while client.session.send_backlog() > 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            assert client.session.send_backlog() == 0

    run_async(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gso", [True, False])
def test_transmit_sends_trains_in_one_syscall_when_gso_is_on(monkeypatch, gso):
    """A bulk stream over a real session: with GSO, datagrams outnumber send syscalls; forced
    off, one syscall per datagram.  Either way every byte arrives in order."""
    if not gso:
        monkeypatch.setattr(udp, "gso_supported", lambda family=None: False)
    else:
        assert udp.gso_supported(), "this Linux kernel should support UDP_SEGMENT"
    received = bytearray()

    def record(rec, event) -> None:
        if isinstance(event, StreamData):
            received.extend(event.data)

    payload = bytes(range(256)) * 4000
    tally = {"datagrams": 0, "calls": 0}
    original_send = udp.DatagramSender.send
    client_senders: list = []

    def counting_send(self, datagrams, addr=None):  # the client's sender only: the bulk data
        before = STATS.send_calls
        original_send(self, datagrams, addr)
        if self in client_senders:
            tally["datagrams"] += len(datagrams)
            tally["calls"] += STATS.send_calls - before

    monkeypatch.setattr(udp.DatagramSender, "send", counting_send)

    async def main() -> None:
        async with session_pair("quic", server_on_event=record) as (client, server, _):
            client_senders.append(client.session._conn.sender)
            sid = client.session.open_stream(unidirectional=True)
            client.session.send_stream_data(sid, payload, end_stream=True)
            await server.wait(lambda: server.finished(sid))
        assert bytes(received) == payload
        sent, calls = tally["datagrams"], tally["calls"]
        assert sent >= len(payload) // 1500
        if gso:
            assert calls < 0.8 * sent, f"{calls} syscalls for {sent} datagrams"
        else:
            assert calls == sent

    run_async(main())


def _connected_pair(max_stream_data: int | None = None) -> tuple[seam.MoqQuicConnection, seam.MoqQuicConnection, list]:
    """A client and a server aioquic connection handshaken in memory; pump() moves datagrams."""
    import ssl

    from moq.transport.quic import make_configuration
    from moq.transport.tls import ServerCredentials

    server_config = make_configuration(is_client=False, alpns=["moqt-18"])
    ServerCredentials.dev().configure(server_config)
    if max_stream_data is not None:
        server_config.max_stream_data = max_stream_data
    client_config = make_configuration(is_client=True, alpns=["moqt-18"])
    client_config.verify_mode = ssl.CERT_NONE
    client = seam.tune_connection(QuicConnection(configuration=client_config))
    client.connect(("127.0.0.1", 1), now=1.0)
    server = seam.tune_connection(QuicConnection(
        configuration=server_config, original_destination_connection_id=client.original_destination_connection_id))
    clock = [1.0]

    def pump(advance: float = 0.0) -> None:
        clock[0] += advance
        moved = True
        while moved:
            moved = False
            for sender, receiver in ((client, server), (server, client)):
                for data, _ in sender.datagrams_to_send(now=clock[0]):
                    receiver.receive_datagram(data, ("127.0.0.1", 1), now=clock[0])
                    moved = True

    for _ in range(5):
        pump(0.01)
    return client, server, [pump]


def test_nothing_to_send_only_when_a_transmit_would_be_empty():
    client, server, (pump,) = _connected_pair()
    now = 2.0
    assert server.nothing_to_send(now) and client.nothing_to_send(now)
    sid = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(sid, bytes(3000))
    assert not server.nothing_to_send(now)  # stream data waits
    data = server.datagrams_to_send(now=now)
    assert len(data) >= 2
    for d, _ in data:
        client.receive_datagram(d, ("127.0.0.1", 1), now=now)
    assert server.nothing_to_send(now)  # all of it is in flight now
    assert not client.nothing_to_send(now)  # two ack-eliciting packets: an ACK is due at once
    acks = client.datagrams_to_send(now=now)
    assert acks and client.nothing_to_send(now)
    for d, _ in acks:
        server.receive_datagram(d, ("127.0.0.1", 1), now=now)
    assert server.nothing_to_send(now)  # an ACK-only packet leaves the server nothing to send
    server.send_ping(7)
    assert not server.nothing_to_send(now)


def test_one_ack_eliciting_packet_is_acknowledged_after_the_delay_two_at_once():
    client, server, (pump,) = _connected_pair()
    now = 3.0
    sid = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(sid, bytes(100))
    (one,) = server.datagrams_to_send(now=now)
    client.receive_datagram(one[0], ("127.0.0.1", 1), now=now)
    assert client.nothing_to_send(now)  # the ACK may wait ...
    assert client.get_timer() <= now + seam.ACK_DELAY  # ... for the timer, within ACK_DELAY
    assert not client.nothing_to_send(now + seam.ACK_DELAY)
    server.send_stream_data(sid, bytes(100))
    (two,) = server.datagrams_to_send(now=now)
    client.receive_datagram(two[0], ("127.0.0.1", 1), now=now)
    assert not client.nothing_to_send(now)  # the second packet makes it due now


def test_receive_only_streams_stay_out_of_the_send_queue_and_are_discarded_when_done():
    """A publisher's half-received group streams cost the relay no per-packet walk: they are
    not in aioquic's send queue, yet each is discarded (and its stream credit returned) once
    it is complete."""
    client, server, (pump,) = _connected_pair()
    sids = []
    for _ in range(60):
        sid = client.get_next_available_stream_id(is_unidirectional=True)
        client.send_stream_data(sid, bytes(100))
        sids.append(sid)
    for _ in range(5):  # a few rounds: the client paces its packets
        pump(0.005)
    assert all(sid in server._streams for sid in sids)
    assert not any(s.stream_id in sids for s in server._streams_queue)
    assert len(server._streams.values()) < 60  # the MAX_STREAM_DATA pass sees none of them once looked at
    for sid in sids:
        client.send_stream_data(sid, b"", end_stream=True)
    for _ in range(5):
        pump(0.005)
    assert not any(sid in server._streams for sid in sids)  # discarded: finished streams are freed
    stopped = client.get_next_available_stream_id(is_unidirectional=True)
    client.send_stream_data(stopped, bytes(10))
    pump(0.001)
    server.stop_stream(stopped, 5)  # owing a STOP_SENDING brings the stream back into the queue
    assert any(s.stream_id == stopped for s in server._streams_queue)


def test_receive_windows_are_still_raised():
    client, server, (pump,) = _connected_pair(max_stream_data=20_000)
    sid = client.get_next_available_stream_id(is_unidirectional=True)
    client.send_stream_data(sid, bytes(200_000), end_stream=True)
    for _ in range(200):
        pump(0.002)
        if sid not in server._streams and server._stream_is_discarded(sid):
            break
    assert server._stream_is_discarded(sid), "the 200 kB stream did not get through a 20 kB window"
