"""The high-resolution uvloop: clock resolution, timers, and a bulk transfer on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from moq.transport import loop as moq_loop

from .test_support import KINDS, run_async, session_pair

pytestmark = pytest.mark.timeout(30)

uvloop = pytest.importorskip("uvloop")


def test_new_event_loop_kinds() -> None:
    fast = moq_loop.new_event_loop()
    plain = moq_loop.new_event_loop(use_uvloop=False)
    try:
        assert isinstance(fast, uvloop.Loop)
        assert not isinstance(plain, uvloop.Loop)
    finally:
        fast.close()
        plain.close()


def test_time_is_sub_millisecond_and_timers_fire() -> None:
    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, moq_loop.HighResUVLoop)
        samples = [loop.time() for _ in range(2000)]
        steps = [b - a for a, b in zip(samples, samples[1:]) if b != a]
        assert len(set(samples)) > 100  # stock uvloop returns the same cached ms value here
        assert steps and min(steps) < 0.001
        assert abs(loop.time() - time.monotonic()) < 0.01

        fired: dict[str, float] = {}
        done = loop.create_future()
        start = loop.time()
        loop.call_later(0.02, lambda: fired.setdefault("later", loop.time() - start))
        loop.call_at(start + 0.03, lambda: fired.setdefault("at", loop.time() - start))
        loop.call_at(start + 0.05, done.set_result, None)
        await done
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        return fired

    fired = moq_loop.run(main())
    # fired, in order, and not absurdly early (libuv may round a timer down by ~1 ms)
    assert set(fired) == {"later", "at"}
    assert 0.015 < fired["later"] < fired["at"]
    assert fired["at"] > 0.025


def test_run_returns_result_and_supports_plain_asyncio() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert moq_loop.run(answer()) == 42
    assert moq_loop.run(answer(), use_uvloop=False) == 42


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_bulk_transfer_on_high_res_uvloop(kind: str) -> None:
    size = 5 * 1024 * 1024
    chunk = bytes(range(256)) * 64  # 16 KiB

    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), moq_loop.HighResUVLoop)
        received = bytearray()

        def sink(rec: object, event: object) -> None:
            data = getattr(event, "data", None)
            if data is not None and getattr(event, "stream_id", None) is not None:
                received.extend(data)

        async with session_pair(kind, server_on_event=sink) as (client, server, _):
            sid = client.session.open_stream(unidirectional=True)
            for offset in range(0, size, len(chunk)):
                client.session.send_stream_data(sid, chunk, end_stream=offset + len(chunk) >= size)
            await server.wait(lambda: server.finished(sid), timeout=45)
            assert len(received) == size
            assert received[: len(chunk)] == chunk and received[-len(chunk) :] == chunk

    run_async(main(), use_uvloop=True, timeout=50)
