"""Seed inputs for each target, from the golden vectors (tests/vectors/*.json): every valid
and invalid encoding there, in the target's input format (tests/vectors/README.md has the
schema).  Starting from real encodings gets the fuzzer past the first bytes at once."""

from __future__ import annotations

import json
from pathlib import Path

from moq.wire import control as c
from moq.wire.buffer import Writer
from moq.wire.data import STREAM_TYPE_FETCH
from moq.wire.types import Parameters, encode_kvp_block, encode_namespace, encode_parameters, encode_track_name
from moq.wire.varint import decode_varint, encode_varint

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
FIN = 0x40
FLAG = 0x80


def load(name: str) -> list[dict]:
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)["vectors"]


def raw(vector: dict) -> bytes:
    return bytes.fromhex("".join(vector["hex"].split()))


def _frames() -> list[bytes]:
    return [raw(v) for v in load("control.json")] + [raw(v) for v in load("invalid.json") if v["kind"] == "control"]


def _streams(kind: str) -> list[tuple[bytes, bool]]:
    """(stream bytes, descending) of the valid and invalid streams of one kind."""
    out = [(raw(v), bool(v.get("descending"))) for v in load("data.json")
           if v["kind"] == kind or (kind == "any" and v["kind"] != "datagram")]
    for v in load("invalid.json"):
        if v["kind"] == "uni_stream":
            data = raw(v)
            t, _ = decode_varint(data) if data else (None, 0)
            is_kind = {"fetch_stream": t == STREAM_TYPE_FETCH,
                       "subgroup_stream": t is not None and t < 0x80 and t & 0x10}.get(kind, True)
            if is_kind:
                out.append((data, bool(v.get("descending"))))
    return out


def _payload_of(frame: bytes) -> tuple[int, bytes]:
    t, p = decode_varint(frame)
    return t, frame[p + 2:]


def _param_blocks() -> list[bytes]:
    """The Message Parameters blocks inside the valid control vectors."""
    out = []
    for frame in (raw(v) for v in load("control.json")):
        t, payload = _payload_of(frame)
        msg = c.decode_message(t, payload)
        params = getattr(msg, "parameters", None)
        if isinstance(params, Parameters):
            w = Writer()
            encode_parameters(w, params)
            out.append(w.getvalue())
    return out


def _fields_of(kind: str) -> list[bytes]:
    """Tokens, filters, namespaces and KVP blocks from the control vectors' messages."""
    out: list[bytes] = []
    for frame in (raw(v) for v in load("control.json")):
        msg = c.decode_message(*_payload_of(frame))
        params = getattr(msg, "parameters", None)
        if kind == "token" and params is not None:
            out += [tok.encode() for tok in params.authorization_tokens]
        elif kind == "filter" and params is not None and params.subscription_filter is not None:
            out.append(params.subscription_filter.encode())
        elif kind == "kvp":
            for name in ("options", "track_properties"):
                if getattr(msg, name, ()):
                    out.append(encode_kvp_block(getattr(msg, name)))
        elif kind == "track_name":
            ns = getattr(msg, "track_namespace", None)
            if ns is not None:
                w = Writer()
                name = getattr(msg, "track_name", None)
                if name is None:
                    encode_namespace(w, ns)
                    out.append(b"\x00" + w.getvalue())
                else:
                    encode_track_name(w, ns, name)
                    out.append(bytes((FLAG,)) + w.getvalue())
    return out


def _session_records() -> list[bytes]:
    """Each control vector on a fresh request stream to the server, each data stream on a
    fresh unidirectional stream to the client, each datagram to the client."""
    out = []
    for frame in _frames():
        if len(frame) < 256:
            out.append(bytes((1, 0x00, len(frame))) + frame)
            out.append(bytes((1, 0x01, len(frame))) + frame)
    for v in load("data.json") + [v for v in load("invalid.json") if v["kind"] != "control"]:
        data = raw(v)
        if len(data) >= 256:
            continue
        if v["kind"] == "datagram":
            out.append(bytes((0, 0x0C, len(data))) + data)
        else:
            out.append(bytes((5, 0x05, len(data))) + data)
    return out


def seeds(target: str) -> list[bytes]:
    if target == "varint":
        return [raw(v) for v in load("varint.json")]
    if target == "control_frames":
        return [bytes((mode,)) + f for f in _frames() for mode in (0, 1 | FIN)]
    if target == "control_payload":
        index = {cls.TYPE: i for i, cls in enumerate(sorted(c.REGISTRY.values(), key=lambda k: k.TYPE))}
        out = []
        for frame in _frames():
            t, payload = _payload_of(frame)
            if t in index:
                out.append(bytes((index[t],)) + payload)
        return out
    if target == "setup":
        out = []
        for v in load("data.json"):
            if v["kind"] == "control_stream":
                data = raw(v)
                _, p = decode_varint(data)
                out += [b"\x00" + data[p:], bytes((FLAG | 3,)) + data[p:]]
        setups = [raw(v) for v in load("control.json") if v["message"]["type"] == "Setup"]
        out += [b"\x00" + s[len(encode_varint(0x2F00)):] for s in setups]
        return out
    if target == "uni_stream":
        return [bytes((FIN | (FLAG if i % 2 else 0),)) + s for i, (s, _) in enumerate(_streams("any"))]
    if target == "subgroup_stream":
        return [bytes((FIN | (FLAG if i % 2 else 0),)) + s for i, (s, _) in enumerate(_streams("subgroup_stream"))]
    if target == "fetch_stream":
        out = []
        for s, desc in _streams("fetch_stream"):
            _, p = decode_varint(s)
            out.append(bytes((FIN | (FLAG if desc else 0),)) + s[p:])
        return out
    if target == "datagram":
        return [raw(v) for v in load("data.json") + load("invalid.json") if v["kind"] == "datagram"]
    if target == "parameters":
        return [bytes((i,)) + block for block in _param_blocks() for i in (0, len(c.REGISTRY))]
    if target in ("token", "filter", "kvp", "track_name"):
        return _fields_of(target) or [b""]
    if target == "session":
        return _session_records()
    if target == "data_memory":
        return [r for r in _session_records() if r[1] & 0x0C]  # the streams and datagrams to the client
    raise KeyError(target)
