"""moq.transport.udp on real sockets: GSO trains and the sendto fallback deliver the same datagrams.

Loopback UDP (127.0.0.1 and ::1), connected and unconnected senders, asyncio's loop and uvloop.
Loopback never reports a full UDP socket (``lo`` releases each packet's send-buffer charge as it
transmits), so the ``EAGAIN`` case runs on a connected AF_UNIX datagram pair, whose send buffer
stays charged until the peer reads.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import struct
import sys

import pytest

from moq.transport import udp
from moq.transport.stats import STATS
from moq.transport.udp import DatagramSender, grow_socket_buffers

from .test_support import run_async

pytestmark = pytest.mark.timeout(60)

HOSTS = ("127.0.0.1", "::1")
LOOPS = pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
BUFFER = 8 * 1024 * 1024  # holds every burst below: the sends are synchronous, the reads come after


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self._changed = asyncio.Event()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.datagrams.append(data)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while len(self.datagrams) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.datagrams


def payloads(sizes: list[int]) -> list[bytes]:
    """Distinct datagrams: a sequence number, then a filler byte that varies with it."""
    return [struct.pack("!I", i) + bytes([i % 251]) * (size - 4) for i, size in enumerate(sizes)]


def kernel_has_gso() -> bool:
    """UDP_SEGMENT arrived in Linux 4.18."""
    if sys.platform != "linux":
        return False
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (4, 18)


async def endpoints(
    host: str, connected: bool
) -> tuple[asyncio.DatagramTransport, Receiver, asyncio.DatagramTransport, tuple]:
    loop = asyncio.get_running_loop()
    rx_transport, receiver = await loop.create_datagram_endpoint(Receiver, local_addr=(host, 0))
    grow_socket_buffers(rx_transport.get_extra_info("socket"), BUFFER)
    peer = rx_transport.get_extra_info("sockname")
    if connected:
        tx_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=peer[:2])
    else:
        tx_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(host, 0))
    return rx_transport, receiver, tx_transport, peer


def counters() -> tuple[int, int, int]:
    return STATS.datagrams_sent, STATS.bytes_sent, STATS.send_calls


# batch sizes -> syscalls with GSO: one per train (equal sizes, a shorter last one closes it),
# at most 64 segments and 65000 bytes each
CASES = {
    "train+short-last": ([1452] * 10 + [700], 1),
    "mixed-trains": ([1200] * 5 + [800] + [1452] * 7 + [100, 100, 100] + [1452], 4),
    "over-64-segments": ([1000] * 150, 3),  # 64 + 64 + 22
    "over-65000-bytes": ([1452] * 100, 3),  # 44 + 44 + 12 (44 * 1452 = 63888)
    "single": ([1452], 1),
}


def test_the_kernel_supports_gso() -> None:
    assert udp.gso_supported(socket.AF_INET) is kernel_has_gso()
    assert udp.gso_supported(socket.AF_INET6) is kernel_has_gso()


@LOOPS
@pytest.mark.parametrize("connected", [False, True], ids=["unconnected", "connected"])
@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("forced_plain", [False, True], ids=["gso", "sendto"])
def test_batches_arrive_as_sent(host: str, connected: bool, forced_plain: bool, use_uvloop: bool) -> None:
    async def main() -> None:
        rx, receiver, tx, peer = await endpoints(host, connected)
        sender = DatagramSender(tx, gso=False if forced_plain else None)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            assert sender.gso is (not forced_plain and udp.gso_supported(family))
            expected: list[bytes] = []
            for name, (sizes, gso_calls) in CASES.items():
                batch = payloads(sizes)
                before = counters()
                sender.send(batch, None if connected else peer)
                sent, nbytes, calls = (after - b for after, b in zip(counters(), before))
                assert (sent, nbytes) == (len(batch), sum(sizes)), name
                assert calls == (gso_calls if sender.gso else len(batch)), name
                expected += batch
                got = await receiver.wait_for(len(expected))
                assert got == expected, name  # same bytes, same order, one datagram each
            if sender.gso:
                assert udp.gso_supported(family)
            assert sender.dropped == 0
        finally:
            sender.close()
            tx.close()
            rx.close()

    run_async(main(), use_uvloop=use_uvloop)


@LOOPS
@pytest.mark.parametrize("host", HOSTS)
def test_kernel_rejecting_gso_falls_back_to_sendto(host: str, use_uvloop: bool) -> None:
    """A socket that sends without UDP checksums cannot use GSO: the kernel says EINVAL."""

    async def main() -> None:
        rx, receiver, tx, peer = await endpoints(host, connected=False)
        view = tx.get_extra_info("socket")
        if ":" in host:  # IPv6 receivers drop zero-checksum datagrams unless told to accept them
            view.setsockopt(socket.IPPROTO_UDP, 101, 1)  # UDP_NO_CHECK6_TX
            rx.get_extra_info("socket").setsockopt(socket.IPPROTO_UDP, 102, 1)  # UDP_NO_CHECK6_RX
        else:
            view.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK
        sender = DatagramSender(tx)
        try:
            assert sender.gso is kernel_has_gso()
            sizes = [1200] * 3 + [1452] * 20 + [500]
            batch = payloads(sizes)
            before = counters()
            sender.send(batch, peer)
            sent, nbytes, calls = (after - b for after, b in zip(counters(), before))
            assert (sent, nbytes, calls) == (len(batch), sum(sizes), len(batch))
            assert sender.gso is False  # switched off for this socket, after one refused sendmsg
            assert await receiver.wait_for(len(batch)) == batch
            more = payloads([1452] * 5)
            sender.send(more, peer)
            assert await receiver.wait_for(len(batch) + len(more)) == batch + more
            assert sender.dropped == 0
        finally:
            sender.close()
            tx.close()
            rx.close()

    run_async(main(), use_uvloop=use_uvloop)


@LOOPS
def test_full_socket_drops_the_rest_of_the_batch(use_uvloop: bool) -> None:
    """EAGAIN: what fitted arrives in order, the rest is dropped and counted, send() never raises."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        tx, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=ours)
        sender = DatagramSender(tx, connected=True)
        try:
            assert sender.gso is False  # not a UDP socket
            burst = payloads([1452] * 500)
            before = counters()
            sender.send(burst, None)
            sent = counters()[0] - before[0]
            assert 0 < sent < len(burst)
            assert sender.dropped == len(burst) - sent
            assert counters()[2] - before[2] == sent  # no syscalls wasted on a full socket
            received = []
            while True:
                try:
                    received.append(theirs.recv(2048))
                except BlockingIOError:
                    break
            assert received == burst[:sent]
            sender.send(burst[:3], None)  # room again: sends resume
            assert [theirs.recv(2048) for _ in range(3)] == burst[:3]
            assert sender.dropped == len(burst) - sent
        finally:
            sender.close()
            tx.close()
            theirs.close()

    run_async(main(), use_uvloop=use_uvloop)


@LOOPS
def test_close_leaves_the_transport_socket_working(use_uvloop: bool) -> None:
    async def main() -> None:
        rx, receiver, tx, peer = await endpoints("127.0.0.1", connected=False)
        sender = DatagramSender(tx)
        try:
            first = payloads([1000] * 3)
            sender.send(first, peer)
            sender.close()
            assert sender.closed
            tx.sendto(b"after close", peer)  # the dup closed, not the transport's descriptor
            assert await receiver.wait_for(4) == [*first, b"after close"]
            # a closed sender falls back to the transport's sendto
            sender.send([b"via transport"], peer)
            assert (await receiver.wait_for(5))[-1] == b"via transport"
        finally:
            tx.close()
            rx.close()

    run_async(main(), use_uvloop=use_uvloop)


@LOOPS
def test_send_after_the_transport_closed_drops_and_closes_the_dup(use_uvloop: bool) -> None:
    async def main() -> None:
        rx, receiver, tx, peer = await endpoints("127.0.0.1", connected=False)
        sender = DatagramSender(tx)
        try:
            tx.close()
            sender.send(payloads([1000] * 4), peer)
            assert sender.closed
            assert sender.dropped == 4
        finally:
            sender.close()
            rx.close()

    run_async(main(), use_uvloop=use_uvloop)


def test_grow_socket_buffers_beyond_the_sysctl_limits_as_root() -> None:
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    with open("/proc/sys/net/core/wmem_max") as f:
        wmem_max = int(f.read())
    size = max(rmem_max, wmem_max) + 1024 * 1024
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        rcvbuf, sndbuf = grow_socket_buffers(sock, size)
        assert (rcvbuf, sndbuf) == (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        if os.geteuid() == 0:  # CAP_NET_ADMIN: the FORCE options ignore the sysctls
            assert rcvbuf >= size and sndbuf >= size
        else:
            assert rcvbuf >= min(size, rmem_max) and sndbuf >= min(size, wmem_max)
