"""Draft numbers and ALPN strings; every per-draft difference is keyed from here."""

from __future__ import annotations

DRAFT_18 = 18

#: ALPN for raw QUIC and the WebTransport protocol token (WT-Available-Protocols).
ALPN = {DRAFT_18: "moqt-18"}
SUPPORTED_DRAFTS = (DRAFT_18,)
SUPPORTED_ALPNS = tuple(ALPN[d] for d in SUPPORTED_DRAFTS)
H3_ALPN = "h3"

IMPLEMENTATION = "moq-py/0.1"


def draft_for_alpn(alpn: str) -> int | None:
    for draft, name in ALPN.items():
        if name == alpn:
            return draft
    return None
