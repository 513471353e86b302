"""A cheaper frame read for moq-rs 0.5.1's Python bindings (runs under .venv-interop only).

Why: `GroupConsumer.read_frame()` costs ~40 µs of Python per frame on this machine.  Each call
creates a uniffi Rust future and an asyncio future, and the Rust side resolves it with
`loop.call_soon_threadsafe` even when the frame is already buffered: one wake-up syscall and one
loop turn per frame.  It then lifts the whole frame (payload copied through a Python byte stream).
Here the same FFI calls are made, but:
  - a frame that is ready when polled completes in place, with no asyncio round trip;
  - only the 28-byte header of the payload is read, and the size comes from the buffer;
  - with `batch` > 0, a group reader that had to wait sleeps `batch` seconds after the wake-up and
    then takes every buffered frame at once.  The relay's sending is unchanged (moq-rs reads its QUIC
    streams into the group whatever the application does).  But the frame's receive time is late by
    up to `batch`, so batched subscriptions count objects and never report latency.

This reaches into the generated bindings (`moq_ffi._uniffi.moq`), pinned by moq-rs==0.5.1.
`available()` says whether they have the expected shape; sub.py falls back to the public API if not.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import struct
import threading

try:
    from moq_ffi._uniffi import moq as _u
except ImportError:  # pragma: no cover - another moq-rs
    _u = None

_NAMES = ("_UniffiLib", "_UNIFFI_RUST_FUTURE_CONTINUATION_CALLBACK", "_UniffiRustCallStatus",
          "_UniffiFfiConverterTypeMoqError", "_uniffi_check_call_status", "_UniffiRustBuffer")
_FNS = ("uniffi_moq_ffi_fn_method_moqgroupconsumer_read_frame", "ffi_moq_ffi_rust_future_poll_rust_buffer",
        "ffi_moq_ffi_rust_future_complete_rust_buffer", "ffi_moq_ffi_rust_future_free_rust_buffer",
        "ffi_moq_ffi_rustbuffer_free", "uniffi_moq_ffi_fn_clone_moqgroupconsumer")
READY = 0
#: Option<MoqFrame> as uniffi lays it out: u8 Some flag, i32 payload length, payload, u64 timestamp
_OPT_LEN = struct.Struct(">bi")


def available() -> bool:
    return _u is not None and all(hasattr(_u, n) for n in _NAMES) and all(hasattr(_u._UniffiLib, f) for f in _FNS)


class FrameReader:
    """Reads frames of moq.GroupConsumer objects; `read(group)` returns (header bytes, size) or None."""

    def __init__(self, loop: asyncio.AbstractEventLoop, header_len: int) -> None:
        lib = _u._UniffiLib
        self.loop, self.header_len = loop, header_len
        self.main = threading.get_ident()
        self.keys = itertools.count(1)
        self.futures: dict[int, asyncio.Future] = {}
        self.sync: dict[int, int] = {}
        self.polling = 0  # the key being polled
        self._new = lib.uniffi_moq_ffi_fn_method_moqgroupconsumer_read_frame
        self._poll = lib.ffi_moq_ffi_rust_future_poll_rust_buffer
        self._complete = lib.ffi_moq_ffi_rust_future_complete_rust_buffer
        self._free = lib.ffi_moq_ffi_rust_future_free_rust_buffer
        self._buf_free = lib.ffi_moq_ffi_rustbuffer_free
        self._clone = lib.uniffi_moq_ffi_fn_clone_moqgroupconsumer
        self._st = _u._UniffiRustCallStatus.default()  # one status for every call (one thread)
        self._stp = ctypes.byref(self._st)
        self._string_at = ctypes.string_at
        self._want = _OPT_LEN.size + header_len
        self._check = _u._uniffi_check_call_status
        self._err = _u._UniffiFfiConverterTypeMoqError
        self._callback = _u._UNIFFI_RUST_FUTURE_CONTINUATION_CALLBACK(self._on_poll)  # kept alive here
        self.waits = 0  # reads that had to wait for the Rust side (one asyncio wake-up each)
        self.reads = 0
        self.waited = False  # did the last read wait?

    def _on_poll(self, key: int, code: int) -> None:
        fut = self.futures.pop(key, None)
        if threading.get_ident() != self.main:  # a Rust runtime thread: wake the loop
            if fut is not None:
                self.loop.call_soon_threadsafe(_resolve, fut, code)
        elif key == self.polling:  # inside the poll call for this very future: the frame was ready
            self.sync[key] = code
        elif fut is not None:  # another read's waker, run inline by some FFI call of this thread
            self.loop.call_soon(_resolve, fut, code)

    async def read(self, group) -> tuple[bytes, int] | None:
        """The next frame's first header_len bytes and its payload size; None at the end of the group."""
        st, stp = self._st, self._stp
        st.code = 0
        rf = self._new(self._clone(group._inner._handle, stp))
        if st.code:
            self._check(self._err, st)
        try:
            waited = False
            while True:
                key = next(self.keys)
                fut = self.futures[key] = self.loop.create_future()
                self.polling = key
                self._poll(rf, self._callback, key)
                self.polling = 0
                code = self.sync.pop(key, None)
                if code is None:
                    waited = True
                    code = await fut
                if code == READY:
                    break
            st.code = 0
            buf = self._complete(rf, stp)
            if st.code:
                self._check(self._err, st)
        finally:
            self._free(rf)
        self.reads += 1
        self.waits += waited
        self.waited = waited
        try:
            if buf.len < 1:
                return None
            return parse_frame(self._string_at(buf.data, min(buf.len, self._want)))
        finally:
            st.code = 0
            self._buf_free(buf, stp)


def parse_frame(head: bytes) -> tuple[bytes, int] | None:
    """The start of an Option<MoqFrame> buffer -> (the payload's first bytes, payload size), None for None."""
    if len(head) < _OPT_LEN.size:
        return None
    some, size = _OPT_LEN.unpack_from(head)
    return (head[_OPT_LEN.size:_OPT_LEN.size + size], size) if some else None


def _resolve(fut: asyncio.Future, code: int) -> None:
    if not fut.done():
        fut.set_result(code)
