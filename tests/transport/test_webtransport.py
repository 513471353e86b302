"""WebTransport specifics: CONNECT on any path, wt-protocol negotiation, codes and capsules."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moq.transport.base import SessionClosed, StreamData
from moq.transport.endpoint import connect, serve
from moq.transport.webtransport import (
    CLOSE_WEBTRANSPORT_SESSION,
    WT_ERROR_FIRST,
    _pull_varint,
    encode_close_capsule,
    h3_to_wt_error,
    parse_sf_string_list,
    sf_string,
    wt_to_h3_error,
)

from .test_support import CREDS, run_async, session_pair, url_for

pytestmark = pytest.mark.timeout(30)

# --- pure helpers -------------------------------------------------------------------------


def test_error_code_mapping_known_values() -> None:
    assert wt_to_h3_error(0) == WT_ERROR_FIRST == 0x52E4A40FA8DB
    assert wt_to_h3_error(0x1D) == WT_ERROR_FIRST + 0x1D
    assert wt_to_h3_error(0x1E) == WT_ERROR_FIRST + 0x1F  # skips the GREASE codepoint
    assert h3_to_wt_error(WT_ERROR_FIRST + 0x1E) is None  # GREASE: 0x1f * N + 0x21
    assert h3_to_wt_error(0x10C) is None  # H3_REQUEST_CANCELLED is not a WT code
    with pytest.raises(ValueError):
        wt_to_h3_error(1 << 32)


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_error_code_mapping_round_trip(code: int) -> None:
    h3 = wt_to_h3_error(code)
    assert (h3 - 0x21) % 0x1F != 0
    assert h3_to_wt_error(h3) == code


def test_structured_field_strings() -> None:
    assert sf_string("moqt-18") == b'"moqt-18"'
    assert sf_string('a"b\\') == b'"a\\"b\\\\"'
    assert parse_sf_string_list(b'"moqt-18"') == ["moqt-18"]
    assert parse_sf_string_list(b'"moqt-18", "moqt-17";q=1,moqt-16') == ["moqt-18", "moqt-17", "moqt-16"]
    assert parse_sf_string_list(b'"a\\"b"') == ['a"b']
    assert parse_sf_string_list(b"") == []
    with pytest.raises(ValueError):
        parse_sf_string_list(b'"unterminated')


def test_close_capsule_encoding() -> None:
    capsule = encode_close_capsule(0x1234, "bye")
    ctype, pos = _pull_varint(capsule, 0)
    length, pos = _pull_varint(capsule, pos)
    assert ctype == CLOSE_WEBTRANSPORT_SESSION and length == 7
    assert capsule[pos:] == b"\x00\x00\x12\x34bye"
    long = encode_close_capsule(1, "é" * 600)  # 1200 bytes of UTF-8, cut to <= 1024 at a code point
    assert len(long) <= 4 + 4 + 1024 and long.endswith("é".encode())


# --- sessions -------------------------------------------------------------------------


def test_any_path_is_accepted_and_reported() -> None:
    async def main() -> None:
        async with session_pair("webtransport", path="/live/room%201?token=abc") as (
            client,
            server,
            listener,
        ):
            assert server.session.path == "/live/room%201?token=abc"
            assert client.session.path == "/live/room%201?token=abc"
            assert server.session.authority == f"127.0.0.1:{listener.port}"
            assert client.session.protocol == server.session.protocol == "moqt-18"

    run_async(main())


def test_protocol_negotiation_picks_first_supported() -> None:
    async def main() -> None:
        async with session_pair(
            "webtransport", alpns=("moqt-99", "moqt-17", "moqt-18"), server_alpns=("moqt-18", "moqt-17")
        ) as (client, server, _):
            assert client.session.protocol == server.session.protocol == "moqt-17"

    run_async(main())


def test_no_common_protocol_is_refused() -> None:
    async def main() -> None:
        server = await serve("127.0.0.1", 0, CREDS, lambda s: None)
        try:
            with pytest.raises(ConnectionError, match="status 400"):
                await connect(
                    url_for("webtransport", server), fingerprint=CREDS.fingerprint, alpns=("moqt-99",)
                )
        finally:
            await server.aclose()

    run_async(main())


def test_close_reason_and_stream_traffic_after_reply() -> None:
    """Client-opened bidi stream with a server reply (the aioquic pitfall, client role), then a
    CLOSE_WEBTRANSPORT_SESSION with code and reason."""

    async def main() -> None:
        async with session_pair("webtransport") as (client, server, _):
            sid = client.session.open_stream(unidirectional=False)
            client.session.send_stream_data(sid, b"SUBSCRIBE")
            await server.wait(lambda: server.data(sid) == b"SUBSCRIBE")
            server.session.send_stream_data(sid, b"SUBSCRIBE_OK")
            await client.wait(lambda: client.data(sid) == b"SUBSCRIBE_OK")
            assert client.of(StreamData)[0].bidirectional
            client.session.close(0xDEADBEEF, "session done ✓")
            await server.wait(lambda: server.closed())
            assert server.closed() == SessionClosed(0xDEADBEEF, "session done ✓")
            await asyncio.wait_for(server.session.wait_closed(), 5)

    run_async(main())


def test_finished_bidi_streams_are_forgotten_by_h3() -> None:
    """aioquic's H3 only frees streams that ended both ways; our writes must tell it."""

    def reply(rec, event) -> None:  # type: ignore[no-untyped-def]
        if isinstance(event, StreamData) and event.end_stream:
            rec.session.send_stream_data(event.stream_id, b"ok", end_stream=True)

    async def main() -> None:
        async with session_pair("webtransport", server_on_event=reply) as (client, server, _):
            ids = [client.session.open_stream(unidirectional=False) for _ in range(50)]
            for sid in ids:
                client.session.send_stream_data(sid, b"req", end_stream=True)
            await client.wait(lambda: all(client.finished(sid) for sid in ids))
            for rec in (client, server):
                leftover = set(rec.session._h3._stream) & set(ids)
                assert not leftover

    run_async(main())


def test_capsule_parser_skips_unknown_capsules_in_pieces() -> None:
    """Unknown capsules are skipped while streaming; a CLOSE split across DATA frames is found."""
    from moq.transport.webtransport import WebTransportSession

    session = WebTransportSession.__new__(WebTransportSession)  # parser state only, no connection
    session._capsules, session._capsule_skip = bytearray(), 0
    seen: list[tuple[int, str]] = []
    session._peer_closed = lambda code, reason: seen.append((code, reason))  # type: ignore[method-assign]
    unknown = bytes([0x40 | 0x3F, 0xFF]) + bytes([0x7F, 0xFF]) + b"\x00" * 0x3FFF  # type 0x3fff, 16 KiB
    stream = unknown + encode_close_capsule(7, "bye")
    for i in range(0, len(stream), 1000):
        session._handle_capsules(stream[i : i + 1000], False)
        assert len(session._capsules) < 1100
    session._handle_capsules(b"", True)
    assert seen == [(7, "bye"), (0, "")]
