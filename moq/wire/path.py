"""The one rule for a session's path: the raw-QUIC SETUP PATH option and the WebTransport
CONNECT ``:path`` are checked alike (path-abempty, optional query, as in a ``moqt://`` or
``https://`` URL), so a path refused on one transport is refused on the other.

Refused: anything not starting with ``/``; a fragment (``#``); bytes outside printable ASCII
(NUL and other controls, space, DEL, non-ASCII); ``.`` or ``..`` segments, also
percent-encoded (a relay that maps paths to anything must never be walked out of it);
percent-encoded controls; and paths over :data:`MAX_PATH_BYTES` (a JWT in ``?jwt=`` fits).
"""

from __future__ import annotations

from urllib.parse import unquote

MAX_PATH_BYTES = 2048
MALFORMED = "malformed"  # HTTP 400 on a CONNECT; MALFORMED_PATH in SETUP
NOT_FOUND = "not_found"  # dot segments: HTTP 404 on a CONNECT; MALFORMED_PATH in SETUP


def check_path(raw: bytes) -> tuple[str, str] | None:
    """None if ``raw`` is an acceptable path, else ``(kind, why)`` with kind MALFORMED or NOT_FOUND."""
    if len(raw) > MAX_PATH_BYTES:
        return MALFORMED, f"path longer than {MAX_PATH_BYTES} bytes"
    if not raw.startswith(b"/"):
        return MALFORMED, "path does not start with /"
    if any(b <= 0x20 or b >= 0x7F for b in raw):
        return MALFORMED, "path has a control, space or non-ASCII byte"
    if b"#" in raw:
        return MALFORMED, "path has a fragment (#)"
    path = raw.split(b"?", 1)[0].decode("ascii")
    for segment in path.split("/"):
        plain = unquote(segment, errors="replace")
        if plain in (".", ".."):
            return NOT_FOUND, "path has a dot segment"
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in plain):
            return MALFORMED, "path has an encoded control byte"
    return None
