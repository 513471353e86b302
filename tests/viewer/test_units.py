"""Pure pieces of moq-view: H.264 parameter sets and access units, AAC configs, statistics."""

from __future__ import annotations

import pytest

from moq.media.catalog import CatalogTrack
from moq.media.h264 import (
    AvcConfig,
    H264Error,
    annexb_to_avcc,
    is_keyframe,
    make_avcc,
    nal_units,
    split_annexb,
    split_avcc,
    to_annexb,
)
from viewer.mp4 import MediaInfo, codec_of, make_asc, parse_adts, parse_asc
from viewer.stats import Stats, TrackStats, percentile
from viewer.subscribe import kind_of

from .media import VideoSource

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("size", [(160, 90), (176, 144), (1920, 1080), (640, 360)])
def test_avcc_from_a_real_encoder_gives_codec_and_size(size):
    src = VideoSource(*size, fps=15, gop=5)
    cfg = AvcConfig.parse(src.avcc)
    assert cfg.size() == size
    assert cfg.codec.startswith("avc1.") and len(cfg.codec) == 11
    assert cfg.length_size == 4 and len(cfg.sps) == 1 and len(cfg.pps) == 1
    assert AvcConfig.parse(cfg.encode()) == cfg
    frames = [f for _ in range(6) for f in src.encode()]
    assert [key for _, key in frames] == [True, False, False, False, False, True]
    for data, key in frames:
        units = split_avcc(data)
        assert is_keyframe(units) == key
        assert split_annexb(to_annexb(units)) == units
        assert nal_units(to_annexb(units)) == units  # Annex B is recognised too
        assert annexb_to_avcc(to_annexb(units)) == data


def test_malformed_h264_is_refused():
    with pytest.raises(H264Error):
        AvcConfig.parse(b"\x00\x01\x02")
    with pytest.raises(H264Error):
        AvcConfig.parse(b"\x01\x42\xc0\x1e\xff\xe1\x00\x40\x67")  # SPS length past the end
    with pytest.raises(H264Error):
        split_avcc(b"\x00\x00\x00\x09abc")
    with pytest.raises(H264Error):
        make_avcc([], [])


def test_aac_configs():
    assert make_asc(2, 48000, 2) == bytes.fromhex("1190")
    assert make_asc(2, 44100, 1) == bytes.fromhex("1208")
    assert parse_asc(bytes.fromhex("1190")) == (2, 48000, 2)
    assert parse_asc(bytes.fromhex("1210")) == (2, 44100, 2)
    # explicit frequency (index 15): 5 bits type, 4 bits 0xF, 24 bits rate, 4 bits channels
    bits = (2 << 35) | (0xF << 31) | (50000 << 7) | (1 << 3)
    assert parse_asc(bits.to_bytes(5, "big")) == (2, 50000, 1)
    adts = bytes([0xFF, 0xF1, (1 << 6) | (3 << 2) | 0, 2 << 6, 0, 0, 0]) + b"raw"
    assert parse_adts(adts) == (7, make_asc(2, 48000, 2))
    assert parse_adts(b"\x21\x00raw aac") is None


def test_codec_and_kind_choices():
    assert codec_of(MediaInfo("video", "avc1.42C01E")) == "h264"
    assert codec_of(MediaInfo("video", "vp09.00.10.08")) is None
    assert codec_of(MediaInfo("audio", "mp4a.40.2")) == "aac"
    assert codec_of(MediaInfo("audio", "opus")) == "opus"
    assert codec_of(MediaInfo("audio")) == "opus"
    assert kind_of("catalog", None) == "catalog"
    assert kind_of("video", None) == "video"
    assert kind_of("cam", CatalogTrack("cam", codec="avc1.64001f")) == "video"
    assert kind_of("mic", CatalogTrack("mic", role="audio")) == "audio"
    assert kind_of("x", CatalogTrack("x", samplerate=48000)) == "audio"
    assert kind_of("events", CatalogTrack("events")) == "data"


def test_gaps_count_missing_objects_and_groups():
    t = TrackStats("video")
    for g, o in [(4, 7), (4, 8), (4, 10), (5, 0), (5, 1), (7, 1), (7, 2), (7, 0)]:
        assert t.record(g, o, 10, None, None, 0.0)
    assert not t.record(5, 1, 10, None, None, 0.0)  # duplicate: not counted
    # group 4 joined at object 7 (no gap before it), object 9 missing; group 6 missing; group 7 complete
    assert t.gaps() == 2 and t.objects == 8 and len(t.groups) == 3 and t.bytes == 80
    assert TrackStats("empty").gaps() == 0


def test_percentiles_and_summary():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    s = Stats()
    v, c = s.track("video", "video"), s.track("catalog", "catalog")
    for i in range(30):
        v.record(i // 15, i % 15, 100, float(i), 1_000_000 + i * 66_667, i / 15)
    c.record(0, 0, 300, None, None, 0.0)
    assert s.summary() == {"summary": True, "objects": 31, "groups": 3, "gaps": 0,
                           "latency_ms_p50": 14.0, "latency_ms_p99": 29.0}
    assert v.rate(2.0) == pytest.approx(15.0, rel=0.01)
    assert v.bitrate(2.0) == pytest.approx(30 * 800 / 2.0, rel=0.01)
    table = s.table(2.0)
    assert table[0].split()[:3] == ["track", "objects", "groups"]
    assert [row.split()[0] for row in table[1:]] == ["video", "catalog", "total"]
