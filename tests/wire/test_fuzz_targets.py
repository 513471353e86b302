"""The coverage-guided fuzz targets (fuzz/) inside `make test`: a bounded, seeded run of every
target (Atheris when installed), the seeds from tests/vectors passing, and the inputs the
long runs found, pinned with what the decoder must do on them.

A failure of the bounded run prints the target's libFuzzer output, with the crashing input
(also saved under fuzz/artifacts/); `python -m fuzz replay TARGET FILE` reproduces it, and
the same command line gives the same run (fixed seed, fresh corpus, PYTHONHASHSEED=0)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fuzz import targets
from fuzz.seeds import seeds
from moq.errors import ProtocolViolation, StreamResetCode, StreamResetError
from moq.wire.data import FetchHeader, FetchObject, FetchObjectCodec
from moq.wire.framing import UniStreamDecoder

from ..relay.relayproc import ROOT, python_env

BOUNDED_RUNS = 3000  # per decoder target; the session targets get a share (fuzz.targets.RUN_WEIGHT)
DECODERS = {"control_frames", "control_payload", "setup", "uni_stream", "subgroup_stream", "fetch_stream",
            "datagram", "parameters", "kvp", "token", "filter", "track_name", "varint", "session"}


def test_every_decoder_has_a_target():
    assert DECODERS <= set(targets.TARGETS)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_from_the_vectors_pass(name):
    items = seeds(name)
    assert items, f"no seeds for {name}"
    for data in items:
        targets.check(name, data)


def test_check_lets_non_protocol_errors_through(monkeypatch):
    """The rule has teeth: an IndexError (or a LocalUsageError) from a decoder is a failure."""
    def boom(_data):
        raise IndexError("bug")

    monkeypatch.setitem(targets.TARGETS, "varint", boom)
    with pytest.raises(IndexError):
        targets.check("varint", b"")
    monkeypatch.setitem(targets.TARGETS, "varint", lambda _d: (_ for _ in ()).throw(ProtocolViolation("ok")))
    targets.check("varint", b"")


@pytest.mark.timeout(180)
def test_bounded_fuzz_run_of_every_target(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz", "all", "--runs", str(BOUNDED_RUNS), "--seed", "1", "--fresh", "--json", str(out)],
        cwd=ROOT, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-8000:]
    results = {r["target"]: r for r in json.loads(out.read_text())}
    assert set(results) == set(targets.TARGETS)
    for name, r in results.items():
        want = max(100, int(BOUNDED_RUNS * targets.RUN_WEIGHT.get(name, 1.0)))
        assert r["runs"] >= want and r["rc"] == 0, r


# --- what the fuzzer found ------------------------------------------------------------------


def feed(decoder: UniStreamDecoder, pieces: list[bytes], fin: bool = True):
    items = []
    for i, piece in enumerate(pieces):
        items += decoder.feed(piece, fin=fin and i == len(pieces) - 1)
    return items


@pytest.mark.parametrize("split", [None, 5, 6])
def test_object_properties_length_split_across_chunks_is_checked_against_the_limit(split):
    """uni_stream/subgroup_stream: a Properties Length varint cut by a chunk boundary asked
    for one byte more than the varint, so the limit went unchecked until that byte came; at a
    FIN right after the varint the same stream gave PROTOCOL_VIOLATION chunked and
    EXCESSIVE_LOAD whole."""
    stream = bytes.fromhex("11 01 00 80") + b"\x00" + b"\x80\x78"  # PROPERTIES bit; object 0, properties of 120 B
    pieces = [stream] if split is None else [stream[:split], stream[split:]]
    with pytest.raises(StreamResetError) as info:
        feed(UniStreamDecoder(max_payload=100), pieces)
    assert info.value.code == StreamResetCode.EXCESSIVE_LOAD


@pytest.mark.parametrize("props", [False, True])
def test_fetch_objects_over_the_size_limit_are_refused_like_subgroup_objects(props):
    """A fetch stream had no --max-object-size: an object announcing 2^40 bytes was buffered
    as it came (the limit now applies to its payload and properties, before any is held)."""
    w = FetchObjectCodec()
    head = w.encode(FetchObject(0, 0, 0, 128, b"x" * 200 if not props else b"", b"p" * 200 if props else b""))
    stream = FetchHeader(1).encode() + head
    dec = UniStreamDecoder(max_payload=100, fetch_descending=lambda _rid: False)
    with pytest.raises(StreamResetError) as info:
        feed(dec, [stream], fin=False)
    assert info.value.code == StreamResetCode.EXCESSIVE_LOAD
    assert feed(UniStreamDecoder(max_payload=1000, fetch_descending=lambda _rid: False), [stream], fin=False)


def test_an_object_in_one_byte_chunks_is_held_at_about_its_size():
    """Held chunks were kept one by one: 1-byte STREAM frames cost ~43 bytes each, so a 16 MB
    object (within --max-object-size) sent that way held 700 MB.  Small chunks are now copied
    into one buffer; the same for a control message."""
    import tracemalloc

    from moq.wire.data import SubgroupHeader, encode_subgroup_object
    from moq.wire.framing import MessageDecoder

    n = 20_000
    dec = UniStreamDecoder(max_payload=1 << 20)
    dec.feed(SubgroupHeader(1, 0).encode() + encode_subgroup_object(None, 0, n))
    msg = MessageDecoder()
    msg.feed(b"\x03\xff\xff")  # a 65 535-byte SUBSCRIBE on its way
    tracemalloc.start()
    try:
        for _ in range(n - 1):
            dec.feed(bytes(1))
            msg.feed(bytes(1))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 4 * n, held
    (obj,) = dec.feed(b"\x07")
    assert len(obj.payload) == n and obj.payload[-1] == 7 and not any(obj.payload[:-1])


def test_a_protocol_error_escaping_the_session_is_a_failure(monkeypatch):
    """The session targets allow nothing out, not even a protocol error."""
    from moq.session import Session

    def leak(self, *args, **kwargs):
        raise ProtocolViolation("leaked")

    monkeypatch.setattr(Session, "receive_stream_data", leak)
    with pytest.raises(AssertionError, match="escaped the session"):
        targets.check("session", bytes((1, 0, 1, 0)))
