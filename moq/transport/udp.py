"""Batched UDP sends: one syscall per train of same-size QUIC datagrams (UDP GSO), ``sendto`` otherwise.

aioquic hands ``transmit()`` a list of datagrams that are mostly full-size packets to one peer.
With UDP generic segmentation offload (Linux >= 4.18) one ``sendmsg`` carries a whole train: the
buffer is the concatenation and the ``UDP_SEGMENT`` control message gives the segment size; the
kernel (or the NIC) cuts it back into datagrams, so the receiver sees ordinary separate datagrams.
A train is consecutive datagrams of one size (only its last may be shorter), at most
:data:`MAX_SEGMENTS` segments and :data:`MAX_TRAIN_BYTES` bytes.

The socket.  asyncio's ``get_extra_info("socket")`` is a ``TransportSocket`` and uvloop's a
``PseudoSocket``; neither offers ``sendmsg``.  :class:`DatagramSender` wraps ``os.dup`` of the
transport's descriptor in a real ``socket.socket``.  A dup is safe where sharing the number is not:
if the transport closes first, the dup still names the same kernel socket (never a recycled fd
number).  The dup keeps that socket (and its port) alive, so it is closed by :meth:`close`, on the
first :meth:`send` after the transport began closing, or when the sender is garbage collected.

A full socket (``EAGAIN``) drops the rest of the batch and counts it in :attr:`dropped`, as a
congested link would: QUIC detects the loss, retransmits and its congestion controller slows down.
Handing the rest to the transport's ``sendto`` would queue it in an unbounded buffer, hide the
congestion from the controller and add latency (bufferbloat).  Other send errors go to the
protocol's ``error_received``, as asyncio's own ``sendto`` does.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import weakref
from collections.abc import Sequence
from typing import Any

import structlog

from .stats import STATS

log = structlog.get_logger(__name__)

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h; Python 3.11 does not define it
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)  # asm-generic/socket.h (Linux)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS until Linux 6.x raised it to 128
MAX_TRAIN_BYTES = 65000  # under the 65507-byte IPv4 UDP payload limit

_GSO_REJECTED = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_gso_probe: dict[int, bool] = {}
_SENT, _FULL, _REJECTED = object(), object(), object()


def gso_supported(family: int = socket.AF_INET) -> bool:
    """Whether this kernel accepts ``UDP_SEGMENT`` for ``family`` (probed once per process).

    The probe sets the option on a throwaway socket; a device without checksum offload can
    still refuse a GSO send (``EIO``), which :class:`DatagramSender` handles per socket.
    """
    known = _gso_probe.get(family)
    if known is None:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.setsockopt(SOL_UDP, UDP_SEGMENT, 1200)
            known = True
        except OSError:
            known = False
        _gso_probe[family] = known
    return known


def grow_socket_buffers(sock: Any, size: int) -> tuple[int, int]:
    """Ask for ``size``-byte receive and send buffers; return ``(rcvbuf, sndbuf)`` as obtained.

    ``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE`` (needs ``CAP_NET_ADMIN``) may exceed
    ``net.core.rmem_max``/``wmem_max``; without the capability the plain options apply, capped by
    those sysctls.  The sizes returned are the kernel's (Linux reports twice the request: it
    counts its bookkeeping).  Works on any object with ``setsockopt``/``getsockopt``, including
    asyncio's and uvloop's socket views.
    """
    obtained = []
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        for opt in (force, plain):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
                break
            except OSError:
                continue
        try:
            obtained.append(sock.getsockopt(socket.SOL_SOCKET, plain))
        except OSError:
            obtained.append(0)
    return obtained[0], obtained[1]


class DatagramSender:
    """Sends batches of datagrams on an asyncio datagram transport's socket, in order.

    ``transport`` is the loop's own transport (it needs ``is_closing`` and ``get_protocol``, so not
    a wrapper).  ``connected`` (default: whether the transport has a peer name) says that the
    socket is connected, so ``addr`` is ignored, as a client's uvloop transport requires.
    ``gso=False`` forces one ``sendto`` per datagram; otherwise GSO is used when the kernel and the
    socket support it.  Without a descriptor, or after :meth:`close`, datagrams go through
    ``transport.sendto``.  Call :meth:`close` from the protocol's ``connection_lost``.
    """

    __slots__ = ("_transport", "_sock", "_connected", "_finalizer", "gso", "dropped", "__weakref__")

    def __init__(
        self, transport: asyncio.DatagramTransport, *, gso: bool | None = None, connected: bool | None = None
    ) -> None:
        self._transport = transport
        self._connected = transport.get_extra_info("peername") is not None if connected is None else connected
        self.dropped = 0
        """Datagrams dropped because the socket was full or a send failed."""
        self._sock: socket.socket | None = None
        self._finalizer: weakref.finalize | None = None
        view = transport.get_extra_info("socket")
        try:
            fd = view.fileno() if view is not None else -1
        except (AttributeError, OSError):
            fd = -1
        if fd >= 0:
            sock = socket.socket(fileno=os.dup(fd))
            sock.setblocking(False)  # O_NONBLOCK is shared with the transport's descriptor anyway
            self._sock = sock
            self._finalizer = weakref.finalize(self, sock.close)
        self.gso = gso is not False and self._gso_capable()
        """Whether trains go out as one GSO ``sendmsg``; switched off if the kernel rejects one."""

    def _gso_capable(self) -> bool:
        sock = self._sock
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or not gso_supported(sock.family):
            return False
        try:
            sock.getsockopt(SOL_UDP, UDP_SEGMENT)  # read-only check that this socket is UDP
        except OSError:
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Close the duplicated descriptor (the transport's own socket is left to the transport)."""
        if self._finalizer is not None:
            self._finalizer()
        self._sock = None
        self.gso = False

    def send(self, datagrams: Sequence[bytes], addr: Any = None) -> None:
        """Send ``datagrams`` to ``addr`` (ignored on a connected socket), in order; never raises."""
        if not datagrams:
            return
        sock = self._sock
        if sock is None or self._transport.is_closing():
            if sock is not None:
                self.close()
            self._send_transport(datagrams, addr)
            return
        if self._connected:
            addr = None
        if self.gso and len(datagrams) > 1:
            self._send_trains(sock, datagrams, addr)
        else:
            self._send_plain(sock, datagrams, 0, len(datagrams), addr)

    def _send_trains(self, sock: socket.socket, datagrams: Sequence[bytes], addr: Any) -> None:
        count = len(datagrams)
        start = 0
        while start < count:
            size = len(datagrams[start])
            limit = min(count, start + min(MAX_SEGMENTS, MAX_TRAIN_BYTES // size if size else 1))
            end = start + 1
            while end < limit and len(datagrams[end]) == size:
                end += 1
            if end < limit and len(datagrams[end]) < size:
                end += 1  # a shorter datagram closes the train
            if end - start == 1:
                if not self._send_plain(sock, datagrams, start, end, addr):
                    return
            else:
                status = self._send_train(sock, datagrams, start, end, size, addr)
                if status is _FULL:
                    return
                if status is _REJECTED:  # this train and the rest of the batch, plainly
                    self._send_plain(sock, datagrams, start, count, addr)
                    return
            start = end

    def _send_train(
        self, sock: socket.socket, datagrams: Sequence[bytes], start: int, end: int, size: int, addr: Any
    ) -> object:
        """One GSO ``sendmsg`` for ``datagrams[start:end]``: ``_SENT``, ``_FULL`` or ``_REJECTED``."""
        buf = b"".join(datagrams[start:end])
        ancillary = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
        try:
            if addr is None:
                sock.sendmsg([buf], ancillary)
            else:
                sock.sendmsg([buf], ancillary, 0, addr)
        except BlockingIOError:
            self._drop(len(datagrams) - start, "socket full")
            return _FULL
        except OSError as exc:
            if exc.errno in _GSO_REJECTED:
                self.gso = False
                log.info("udp GSO rejected by the kernel; plain sendto on this socket", error=str(exc))
                return _REJECTED
            self._error(exc, end - start)
            return _SENT
        STATS.send_calls += 1
        STATS.datagrams_sent += end - start
        STATS.bytes_sent += len(buf)
        return _SENT

    def _send_plain(self, sock: socket.socket, datagrams: Sequence[bytes], start: int, end: int, addr: Any) -> bool:
        """One ``sendto`` per datagram; False (rest of the batch dropped) when the socket is full."""
        sent = 0
        nbytes = 0
        stats = STATS
        try:
            for index in range(start, end):
                data = datagrams[index]
                try:
                    if addr is None:
                        sock.send(data)
                    else:
                        sock.sendto(data, addr)
                except BlockingIOError:
                    self._drop(len(datagrams) - index, "socket full")
                    return False
                except OSError as exc:
                    self._error(exc, 1)
                    continue
                sent += 1
                nbytes += len(data)
        finally:
            stats.send_calls += sent
            stats.datagrams_sent += sent
            stats.bytes_sent += nbytes
        return True

    def _send_transport(self, datagrams: Sequence[bytes], addr: Any) -> None:
        transport = self._transport
        if transport.is_closing():  # nothing can leave a closed socket (asyncio would only warn)
            self._drop(len(datagrams), "transport closed")
            return
        for data in datagrams:
            if self._connected:
                transport.sendto(data)
            else:
                transport.sendto(data, addr)
            STATS.send_calls += 1
            STATS.datagrams_sent += 1
            STATS.bytes_sent += len(data)

    def _drop(self, count: int, why: str) -> None:
        if not self.dropped:
            log.info("udp send dropped datagrams (first time on this socket)", why=why, count=count)
        self.dropped += count

    def _error(self, exc: OSError, count: int) -> None:
        self._drop(count, f"send failed: {exc}")
        protocol = self._transport.get_protocol()
        if isinstance(protocol, asyncio.DatagramProtocol):
            protocol.error_received(exc)
