"""Pure packaging: H.264 bitstream plumbing, LOC objects, group = GOP, the MSF catalog."""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest

from moq.media.catalog import Catalog
from moq.media.loc import LocProperties
from publisher.ingest import H264Encoder, PatternSource, Settings
from publisher.packaging import (
    AacConfig,
    AudioInfo,
    AudioPackager,
    AvcConfig,
    BitstreamError,
    BroadcastPackager,
    CatalogPublisher,
    H264Normalizer,
    VideoInfo,
    VideoPackager,
    annexb_to_avc,
    avc_config_from_extradata,
    build_catalog,
    final_catalog,
    is_keyframe_avc,
    parse_bitrate,
    parse_sps,
    split_annexb,
    split_avc,
    strip_adts,
)
from publisher.testsrc import Painter, Tone, clock_text

pytestmark = pytest.mark.timeout(30)

# SPS/PPS that libx264 (main profile, 320x180, level 2.0) put in its extradata (Annex B)
SPS = bytes.fromhex("674d4014da05067e78400000030040000007a3c50aa8")
PPS = bytes.fromhex("68ef3c80")
X264_EXTRADATA = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS


def props(obj) -> LocProperties:
    return LocProperties.decode(obj.properties)


# --- H.264 bitstream ----------------------------------------------------------------------------


def test_annexb_to_avc_replaces_start_codes_with_4_byte_lengths():
    nal1, nal2, nal3 = b"\x65" + b"\x11" * 300, b"\x41\x22", b"\x06\x05\x00"
    stream = b"\x00\x00\x00\x01" + nal1 + b"\x00\x00\x01" + nal2 + b"\x00\x00\x00\x01" + nal3
    assert split_annexb(stream) == [nal1, nal2, nal3]
    avc = annexb_to_avc(stream)
    assert avc == (len(nal1).to_bytes(4, "big") + nal1 + len(nal2).to_bytes(4, "big") + nal2
                   + len(nal3).to_bytes(4, "big") + nal3)
    assert split_avc(avc) == [nal1, nal2, nal3]
    assert annexb_to_avc(stream, 2)[:2] == len(nal1).to_bytes(2, "big")


def test_split_avc_rejects_bad_lengths():
    with pytest.raises(BitstreamError):
        split_avc(b"\x00\x00\x00\x09abc")
    with pytest.raises(BitstreamError):
        split_avc(b"\x00\x00")


def test_sps_fields_and_codec_string():
    info = parse_sps(SPS)
    assert (info.profile_idc, info.constraint_flags, info.level_idc) == (77, 0x40, 20)
    assert (info.width, info.height) == (320, 180)  # 12 macroblock rows, cropped to 180
    config = avc_config_from_extradata(X264_EXTRADATA)
    assert config is not None and config.codec == "avc1.4D4014"
    assert config.sps == (SPS,) and config.pps == (PPS,) and config.length_size == 4


def test_avcc_round_trip_and_from_annexb():
    config = AvcConfig.from_parameter_sets([SPS], [PPS])
    record = config.encode()
    assert record[:5] == bytes([1, 0x4D, 0x40, 0x14, 0xFF]) and record[5] == 0xE1
    assert AvcConfig.parse(record) == config
    assert avc_config_from_extradata(record) == config
    assert avc_config_from_extradata(b"") is None
    with pytest.raises(BitstreamError):
        AvcConfig.parse(b"\x01\x4d\x40")


@pytest.mark.parametrize("profile,size,expect", [("main", (320, 180), "avc1.4D"), ("high", (64, 48), "avc1.64"),
                                                 ("baseline", (176, 144), "avc1.42")])
def test_codec_string_matches_what_libx264_produced(profile, size, expect):
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt = *size, "yuv420p"
    cc.time_base = Fraction(1, 15)
    cc.flags |= av.codec.context.Flags.global_header
    cc.options = {"profile": profile, "preset": "veryfast", "tune": "zerolatency"}
    cc.open()
    config = avc_config_from_extradata(cc.extradata)
    sps = parse_sps(config.sps[0])
    assert config.codec.startswith(expect)
    assert config.codec == f"avc1.{sps.profile_idc:02X}{sps.constraint_flags:02X}{sps.level_idc:02X}"
    assert (sps.width, sps.height) == size


def test_normalizer_avc_input_whose_length_looks_like_a_start_code():
    """A 4-byte length of 0x000001xx must not be taken for a 3-byte start code."""
    slice_nal = b"\x65" + bytes(range(256)) * 2  # 513 bytes: length 00 00 02 01
    small = b"\x41" + b"\x07" * 0x1A2  # length 00 00 01 a3
    record = AvcConfig.from_parameter_sets([SPS], [PPS]).encode()
    norm = H264Normalizer(record)
    au = len(small).to_bytes(4, "big") + small + len(slice_nal).to_bytes(4, "big") + slice_nal
    payload, changed = norm.feed(au)
    assert payload == au and not changed
    assert norm.config.codec == "avc1.4D4014"


def test_normalizer_annexb_with_in_band_parameter_sets():
    norm = H264Normalizer(None)
    idr = b"\x65\x88\x84"
    payload, changed = norm.feed(b"\x00\x00\x00\x01\x09\xf0" + X264_EXTRADATA + b"\x00\x00\x01" + idr)
    assert changed and norm.config is not None and norm.config.codec == "avc1.4D4014"
    assert payload == len(idr).to_bytes(4, "big") + idr, "SPS/PPS/AUD go to the avcC, not the payload"
    assert is_keyframe_avc(payload)
    payload, changed = norm.feed(b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01" + idr)
    assert not changed, "the same parameter sets again: no change"
    _, changed = norm.feed(b"\x00\x00\x00\x01\x41\x9a")
    assert not changed


def test_normalizer_rewrites_short_length_prefixes():
    record = bytearray(AvcConfig.from_parameter_sets([SPS], [PPS]).encode())
    record[4] = 0xFC | 1  # 2-byte lengths
    norm = H264Normalizer(bytes(record))
    nal = b"\x41\x9a\x00\x01"
    payload, _ = norm.feed(len(nal).to_bytes(2, "big") + nal)
    assert payload == len(nal).to_bytes(4, "big") + nal


def test_aac_audio_specific_config():
    lc = AacConfig.parse(b"\x12\x10")
    assert (lc.object_type, lc.samplerate, lc.channels, lc.codec) == (2, 44100, 2, "mp4a.40.2")
    assert AacConfig.parse(b"\x11\x90").samplerate == 48000
    with pytest.raises(BitstreamError):
        AacConfig.parse(b"\x12")
    adts = bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC]) + b"raw"
    assert strip_adts(adts) == b"raw" and strip_adts(b"raw") == b"raw"


# --- LOC objects and groups ---------------------------------------------------------------------


def test_video_group_per_gop_with_loc_properties():
    vp = VideoPackager(first_group=100)
    frames = [(False, 1), (True, 2), (False, 3), (False, 4), (True, 5), (False, 6)]
    objs = [vp.push(f"f{ts}".encode(), key, 1_700_000_000_000_000 + ts, b"AVCC") for key, ts in frames]
    assert objs[0] is None and vp.dropped == 1, "nothing before the first keyframe"
    got = [(o.group_id, o.object_id, o.closes) for o in objs[1:]]
    assert got == [(100, 0, None), (100, 1, None), (100, 2, None), (101, 0, 100), (101, 1, None)]
    for (key, ts), o in zip(frames[1:], objs[1:]):
        p = props(o)
        assert p.timestamp == 1_700_000_000_000_000 + ts and p.timescale is None, "wall-clock µs on every object"
        assert p.video_config == (b"AVCC" if key else None), "Video Config on keyframes only"


def test_video_restart_opens_a_new_group_at_the_next_keyframe():
    vp = VideoPackager(first_group=0)
    vp.push(b"k", True, 1, b"C")
    vp.push(b"p", False, 2, b"C")
    vp.restart()
    assert vp.push(b"p", False, 3, b"C") is None, "a delta frame cannot start the new group"
    o = vp.push(b"k", True, 4, b"C")
    assert (o.group_id, o.object_id, o.closes) == (1, 0, 0)


def test_audio_groups_of_about_a_second_with_config_on_first_object():
    ap = AudioPackager(first_group=7, group_us=1_000_000)
    objs = [ap.push(b"a", 5_000_000 + i * 20_000, b"ASC") for i in range(120)]
    assert [o.group_id for o in objs] == [7] * 50 + [8] * 50 + [9] * 20
    assert [o.object_id for o in objs[:52]] == list(range(50)) + [0, 1]
    assert all(props(o).timestamp == 5_000_000 + i * 20_000 for i, o in enumerate(objs))
    assert [i for i, o in enumerate(objs) if props(o).audio_config == b"ASC"] == [0, 50, 100]
    assert objs[50].closes == 7
    ap.restart()
    o = ap.push(b"a", 7_420_000, None)
    assert (o.group_id, o.object_id) == (10, 0) and props(o).audio_config is None


# --- the catalog ----------------------------------------------------------------------------


def test_catalog_has_the_msf_fields():
    cat = build_catalog(VideoInfo("avc1.4D401F", 1280, 720, 30.0, 2_500_000),
                        AudioInfo("opus", 48000, 2, 96_000), gop_ms=2000)
    doc = json.loads(cat.encode())
    assert doc["version"] == "draft-01"
    video, audio = doc["tracks"]
    for t in (video, audio):
        assert t["packaging"] == "loc" and t["isLive"] is True and t["renderGroup"] == 1
    assert video == {"name": "video", "packaging": "loc", "isLive": True, "role": "video", "renderGroup": 1,
                     "codec": "avc1.4D401F", "framerate": 30, "bitrate": 2500000, "maxGopDuration": 2000,
                     "width": 1280, "height": 720}
    assert audio["name"] == "audio" and audio["codec"] == "opus" and audio["samplerate"] == 48000
    assert audio["channelConfig"] == "2" and audio["bitrate"] == 96000 and audio["role"] == "audio"
    assert Catalog.decode(cat.encode()) == cat


def test_catalog_new_group_only_when_it_changes():
    cp = CatalogPublisher(first_group=50)
    a = build_catalog(VideoInfo("avc1.42C01E", 640, 360, 30, 1_000_000), None)
    o = cp.update(a, 1000)
    assert (o.group_id, o.object_id, o.closes) == (50, 0, None)
    assert json.loads(o.payload)["generatedAt"] == 1000
    assert cp.update(a, 2000) is None
    b = build_catalog(VideoInfo("avc1.42C01F", 1280, 720, 30, 1_000_000), None)
    o = cp.update(b, 3000)
    assert (o.group_id, o.closes) == (51, 50)
    cp.restart()
    assert cp.update(b, 4000).group_id == 52, "after a reconnect the catalog is published again"
    end = Catalog.decode(cp.update(final_catalog(), 5000).payload)
    assert end.is_complete and end.tracks == ()


def _pkt(kind, codec, data, key, ts, extradata=None, **kw):
    fmt = SimpleNamespace(kind=kind, codec=codec, extradata=extradata, framerate=kw.get("fps", 30.0),
                          bitrate=kw.get("bitrate", 1_000_000), samplerate=kw.get("rate", 48000), channels=2)
    return SimpleNamespace(fmt=fmt, data=data, keyframe=key, ts_us=ts)


def test_broadcast_packager_aac_passthrough_and_catalog():
    bp = BroadcastPackager(first_group=10)
    bp.expected = frozenset({"video", "audio"})
    idr = b"\x00\x00\x00\x01\x65\x88"
    out = bp.push(_pkt("video", "h264", idr, True, 1_000, X264_EXTRADATA), 1)
    assert [n for n, _ in out] == ["video"], "the catalog waits for the audio stream's format"
    (_, vobj), = out
    assert vobj.payload == b"\x00\x00\x00\x02\x65\x88"
    assert props(vobj).video_config == AvcConfig.from_parameter_sets([SPS], [PPS]).encode()
    out = bp.push(_pkt("audio", "aac", b"aac!", True, 2_000, b"\x12\x10", rate=44100), 2)
    assert [n for n, _ in out] == ["catalog", "audio"]
    cat = Catalog.decode(out[0][1].payload)
    assert cat.track("video").codec == "avc1.4D4014" and (cat.track("video").width, cat.track("video").height) == (
        320, 180)
    assert cat.track("audio").codec == "mp4a.40.2" and cat.track("audio").samplerate == 44100
    assert props(out[1][1]).audio_config == b"\x12\x10"
    assert bp.push(_pkt("audio", "aac", b"aac!", True, 22_000, b"\x12\x10", rate=44100), 3)[0][0] == "audio"


def test_testsrc_packets_package_into_gops():
    """The real encoders: 2 s of testsrc at 15 fps, GOP 0.5 s → groups of 7-8 frames."""
    src = PatternSource(Settings(width=160, height=96, fps=15, bitrate=200_000, gop=0.5))
    bp = BroadcastPackager(first_group=0, gop_ms=500)
    bp.expected = src.kinds
    written: dict[str, list] = {"video": [], "audio": [], "catalog": []}
    for pkt in src.packets():
        for name, obj in bp.push(pkt, 0):
            written[name].append(obj)
        if len(written["video"]) >= 30:
            break
    video, audio, catalogs = written["video"], written["audio"], written["catalog"]
    assert len(catalogs) == 1
    cat = Catalog.decode(catalogs[0].payload)
    assert cat.track("video").codec.startswith("avc1.4D") and cat.track("audio").codec == "opus"
    assert (cat.track("video").width, cat.track("video").height) == (160, 96)
    starts = [i for i, o in enumerate(video) if o.object_id == 0]
    assert starts[0] == 0 and len(starts) >= 3
    assert all(b - a in (7, 8) for a, b in zip(starts, starts[1:])), f"a group per 0.5 s GOP: {starts}"
    for o in video:
        key = is_keyframe_avc(o.payload)
        assert key == (o.object_id == 0), "a keyframe exactly at each group start"
        assert (props(o).video_config is not None) == key
    ts = [props(o).timestamp for o in video]
    assert all(b - a == pytest.approx(66_667, abs=1) for a, b in zip(ts, ts[1:]))
    assert len(audio) >= 40 and all(props(o).timestamp for o in audio)


# --- small pieces ----------------------------------------------------------------------------------


def test_parse_bitrate():
    assert parse_bitrate("2500k") == 2_500_000 and parse_bitrate("2.5M") == 2_500_000
    assert parse_bitrate("800000") == 800_000
    for bad in ("", "fast", "-1k", "0"):
        with pytest.raises(ValueError):
            parse_bitrate(bad)


def test_testsrc_pictures_move_and_show_the_clock():
    p = Painter(320, 180)
    a = p.frame(0, 1_700_000_000_000_000).copy()
    b = p.frame(10, 1_700_000_000_000_000).copy()
    c = p.frame(10, 1_700_000_001_234_000).copy()
    assert a.shape == (270, 320) and a.dtype == np.uint8
    assert (a != b).mean() > 0.3, "the pattern moves"
    diff = np.argwhere(b[:180] != c[:180])
    assert len(diff) > 50 and diff[:, 0].min() > 90, "only the clock (lower part) differs"
    assert clock_text(1_700_000_001_234_000).endswith(".234") and len(clock_text(0)) == 12
    tone = Tone(48000, 0).samples(0, 960)
    assert tone.shape == (1, 1920) and np.abs(tone).max() > 5000, "a beep at the start of each second"


def test_encoder_gop_forced_keyframes_and_main_profile_without_b_frames():
    enc = H264Encoder(320, 180, 15, 300_000, gop=1.0)
    config = avc_config_from_extradata(enc.extradata)
    assert config.codec.startswith("avc1.4D"), "main profile"
    painter = Painter(320, 180)
    keys, order = [], []
    for i in range(40):
        if i == 20:
            enc.force_next = True  # what a reconnect asks for
        frame = av.VideoFrame.from_ndarray(painter.frame(i, 0), format="yuv420p")
        for _data, key, pts, dts in enc.encode(frame, i * 1_000_000 // 15):
            order.append((pts, dts))
            if key:
                keys.append(round(pts * 15 / 1_000_000))
    assert keys == [0, 15, 20, 35], keys
    assert all(p == d for p, d in order), "no B-frames: decode order is presentation order"


def test_testsrc_skips_frames_when_it_falls_behind(monkeypatch):
    import publisher.ingest as ingest

    clock = [1_800_000_000_000_000]
    monkeypatch.setattr(ingest, "now_us", lambda: clock[0])
    src = PatternSource(Settings(width=64, height=64, fps=10, bitrate=100_000, gop=1.0))
    video = []
    for pkt in src.packets():
        if pkt.kind == "video":
            video.append(pkt.ts_us)
            clock[0] = pkt.ts_us  # keeping up...
            if len(video) == 3:
                clock[0] += 2_000_000  # ...then a 2 s stall
        if len(video) == 6:
            break
    steps = [b - a for a, b in zip(video, video[1:])]
    assert steps[:2] == [100_000, 100_000] and steps[2] >= 2_000_000 and steps[3:] == [100_000, 100_000]
