"""Honest loss accounting (issue 14): a high-bitrate track crosses the relay without losing a
group, and moq-view counts and reports every group the relay reset or never sent."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from moq import api
from moq.broadcast import Publisher
from moq.media.loc import LocProperties, now_us
from moq.transport.loop import run
from moq.wire.types import namespace_from_str
from tests.relay.relayproc import RelayProcess

FPS, SECONDS = 30, 4
KEY_BYTES, FRAME_BYTES = 2_600_000, 16_000  # a 2.6 MB key frame per 1 s group: 24 Mbit/s
AUDIO_PER_S, AUDIO_BYTES = 50, 200


@pytest.mark.timeout(60)
def test_a_24_mbit_track_crosses_the_relay_without_losing_a_group():
    """One key frame is more than the 2 MiB backlog floor: the per-subscriber bound follows the
    bitrate, so neither the video group nor the audio group opened behind it is dropped (at
    the publisher's sink or the relay's)."""
    key, frame, sound = bytes(KEY_BYTES), bytes(FRAME_BYTES), bytes(AUDIO_BYTES)
    ns = namespace_from_str("live/fast")

    async def scenario(relay: RelayProcess) -> tuple[dict, dict]:
        publisher = Publisher()
        pub = await api.connect(relay.url(), fingerprint=relay.fingerprint, handler=publisher)
        sub = await api.connect(relay.url(), fingerprint=relay.fingerprint)
        video, audio = publisher.create_track(ns, b"video"), publisher.create_track(ns, b"audio")
        await pub.publish_namespace(ns)
        subs = {name: await sub.subscribe(ns, name.encode()) for name in ("video", "audio")}
        got: dict[str, dict[int, int]] = {"video": {}, "audio": {}}

        async def read(name: str) -> None:
            async for obj in subs[name]:
                got[name][obj.group_id] = got[name].get(obj.group_id, 0) + 1

        readers = [asyncio.create_task(read(n)) for n in subs]
        start = time.monotonic()
        for i in range(SECONDS * FPS):
            g, o = divmod(i, FPS)
            if o == 0 and g:
                video.end_group(g - 1)
            video.write(g, o, key if o == 0 else frame, properties=LocProperties(timestamp=now_us()).encode())
            for a in range(i * AUDIO_PER_S // FPS, (i + 1) * AUDIO_PER_S // FPS):  # audio groups open with the video groups
                ag, ao = divmod(a, AUDIO_PER_S)
                if ag < 0:
                    continue
                if ao == 0 and ag:
                    audio.end_group(ag - 1)
                audio.write(ag, ao, sound)
            await asyncio.sleep(max(0.0, start + (i + 1) / FPS - time.monotonic()))
        video.end_group(SECONDS - 1)
        expected = {"video": {g: FPS for g in range(SECONDS)}, "audio": {g: AUDIO_PER_S for g in range(SECONDS)}}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
                {g: got[n].get(g) for g in expected[n]} != expected[n] for n in expected):
            await asyncio.sleep(0.05)
        for t in readers:
            t.cancel()
        for conn in (sub, pub):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.aclose(), 3)
        return expected, {n: {g: got[n].get(g) for g in expected[n]} for n in expected}

    with RelayProcess() as relay:
        expected, got = run(scenario(relay))
        dropped = relay.metrics().get("moq_relay_dropped_groups_total", 0)
    assert got == expected, f"groups lost: {got}"
    assert dropped == 0


def test_gap_accounting_units():
    """Resets, missing groups and holes each count once; a reset group that never delivered an
    object is not also a missing one; a jump to a new numbering (a restarted publisher numbers
    its groups from the wall clock) is not loss."""
    from viewer.stats import TrackStats

    t = TrackStats("video", "video")
    for g, objects in ((10, (0, 1, 2)), (11, (0,)), (13, (0, 2)), (14, (0,)), (5_000_000, (0,))):
        for o in objects:
            t.record(g, o, 1, None, None, 0.0)
    assert t.reset(11, 0, 5) and not t.reset(11, 0, 5) and t.reset(12, 0, 5)
    assert t.missing_groups() == [] and t.missing_objects() == {13: 1}
    assert t.gaps() == 3  # groups 11 and 12 reset (12 before any object came), one object of 13
    assert t.describe_gaps() == ("track video: 3 gaps: 2 reset (groups 11, 12: TOO_FAR_BEHIND 0x5); "
                                 "1 missing objects in group 13")
    assert {r["gap"] for r in t.gap_rows()} == {"objects"}
