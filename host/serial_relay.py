"""A pseudo-terminal serial link with a real baud-rate limit and fault injection.

pyserial on a pseudo-terminal moves bytes as fast as the kernel copies them;
a real UART at 921,600 baud (8N1: 10 bits per byte) carries 92,160 bytes/s.
:class:`SerialRelay` opens two pseudo-terminal pairs and copies bytes between
their master sides in a background thread, paced to the configured baud rate
in each direction, so both ends open ordinary tty paths with pyserial::

    with SerialRelay(baud=921600) as link:
        hub = serial.Serial(link.hub_path)      # what the hub process opens
        host = serial.Serial(link.host_path)    # what ``host flash --port`` opens

Faults for tests: :meth:`corrupt_at` flips a bit in the n-th byte sent from
the host side, :meth:`cut_after` stops forwarding after n more host bytes
(an unplugged cable) until :meth:`restore`.

No socat needed: this is pure Python (os.openpty + select), so CI needs
nothing extra.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from typing import Dict, List, Optional


class _Direction:
    """One direction of the link: a paced byte queue."""

    def __init__(self, src_fd: int, dst_fd: int, bytes_per_s: Optional[float]) -> None:
        self.src_fd = src_fd
        self.dst_fd = dst_fd
        self.bytes_per_s = bytes_per_s
        self.pending = bytearray()
        self.sent = 0  # bytes forwarded so far
        self.received = 0  # bytes read from the source so far
        self.free_at = 0.0  # time the wire finishes the bytes already handed over
        self.corrupt: List[int] = []  # absolute byte indices (of received bytes) to flip
        self.cut_at: Optional[int] = None  # received-byte index from which bytes are dropped
        self.dropped = 0


class SerialRelay:
    """Two pseudo-terminals joined by a paced, fault-injecting relay thread.

    Args:
        baud: Link rate in baud (None: unthrottled).
        bits_per_byte: Bits on the wire per byte (10 for 8N1).
    """

    #: How far ahead of the wire bytes are handed to the far end (a UART FIFO), s.
    LEAD_S = 0.004

    def __init__(self, baud: Optional[int] = 921600, bits_per_byte: int = 10) -> None:
        self.baud = baud
        self.bits_per_byte = bits_per_byte
        self.bytes_per_s = (baud / bits_per_byte) if baud else None
        self._host_master, host_slave = os.openpty()
        self._hub_master, hub_slave = os.openpty()
        for fd in (host_slave, hub_slave, self._host_master, self._hub_master):
            tty.setraw(fd)
        self.host_path = os.ttyname(host_slave)
        self.hub_path = os.ttyname(hub_slave)
        # Keep the slaves open so the masters never see EIO when an end closes.
        self._slaves = (host_slave, hub_slave)
        for fd in (self._host_master, self._hub_master):
            os.set_blocking(fd, False)
        self.up = _Direction(self._host_master, self._hub_master, self.bytes_per_s)  # host -> hub
        self.down = _Direction(self._hub_master, self._host_master, self.bytes_per_s)  # hub -> host
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serial-relay", daemon=True)

    # ------------------------------------------------------------ faults
    def corrupt_at(self, index: int) -> None:
        """Flip the lowest bit of host-sent byte number ``index`` (counted from the start)."""
        with self._lock:
            self.up.corrupt.append(int(index))

    def cut_after(self, n_bytes: int) -> None:
        """Drop every host-sent byte after ``n_bytes`` more (an unplugged cable)."""
        with self._lock:
            self.up.cut_at = self.up.received + int(n_bytes)
            self.down.cut_at = None

    def cut_now(self) -> None:
        """Drop everything in both directions from now on until :meth:`restore`."""
        with self._lock:
            self.up.cut_at = self.up.received
            self.down.cut_at = self.down.received
            self.up.pending.clear()
            self.down.pending.clear()

    def restore(self) -> None:
        """Plug the cable back in."""
        with self._lock:
            self.up.cut_at = None
            self.down.cut_at = None

    def stats(self) -> Dict[str, int]:
        """Bytes forwarded and dropped per direction."""
        return {"up_sent": self.up.sent, "down_sent": self.down.sent,
                "up_dropped": self.up.dropped, "down_dropped": self.down.dropped}

    # ------------------------------------------------------------ thread
    def _ingest(self, d: _Direction) -> None:
        try:
            data = os.read(d.src_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        with self._lock:
            buf = bytearray(data)
            start = d.received
            for idx in list(d.corrupt):
                if start <= idx < start + len(buf):
                    buf[idx - start] ^= 0x01
                    d.corrupt.remove(idx)
            if d.cut_at is not None:
                keep = max(0, d.cut_at - start)
                d.dropped += max(0, len(buf) - keep)
                buf = buf[:keep]
            d.received += len(data)
            d.pending += buf

    def _flush(self, d: _Direction, now: float) -> None:
        """Write what the wire can carry by ``now``.

        Models a UART with a small transmit FIFO: the wire is busy until
        ``d.free_at``; bytes may be handed over up to ``LEAD_S`` ahead of it.
        """
        if not d.pending:
            return
        if d.bytes_per_s is None:
            n = len(d.pending)
        else:
            if d.free_at < now:
                d.free_at = now  # the wire was idle
            n = int((now + self.LEAD_S - d.free_at) * d.bytes_per_s)
            if n <= 0:
                return
        try:
            written = os.write(d.dst_fd, bytes(d.pending[:n]))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        with self._lock:
            del d.pending[:written]
        d.sent += written
        if d.bytes_per_s is not None:
            d.free_at += written / d.bytes_per_s

    def _run(self) -> None:
        fds = [self._host_master, self._hub_master]
        while not self._stop.is_set():
            busy = self.up.pending or self.down.pending
            timeout = 0.0005 if busy else 0.02
            try:
                readable, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                break
            if self._host_master in readable:
                self._ingest(self.up)
            if self._hub_master in readable:
                self._ingest(self.down)
            now = time.perf_counter()
            self._flush(self.up, now)
            self._flush(self.down, now)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "SerialRelay":
        """Start forwarding."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close every descriptor."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for fd in (self._host_master, self._hub_master, *self._slaves):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "SerialRelay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
