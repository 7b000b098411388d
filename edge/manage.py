"""The hub's management port: flash, provision, rollback, status and logs.

A technician's laptop reaches the hub over USB serial (the Pi's USB gadget
port, ``/dev/ttyGS0`` on the hub, ``/dev/ttyACM0`` on the laptop) and talks
the protocol of :mod:`edge.protocol`. This module holds both ends:

* :class:`ManagementServer` (hub side, asyncio): answers
  ``ManagementRequest`` ops and receives ``Flash*`` transfers into the
  :class:`edge.store.BundleStore`;
* :class:`ManagementClient` (laptop side, blocking pyserial): what the
  ``host`` commands call.

Flash transfer (see ``docs/protocol.md`` for the frames)::

    laptop                              hub
    FlashBegin(id, size, sha256)  ->
                                  <-    FlashAck(id, next_offset)   0, or the resume point
    FlashChunk(id, off, crc32, data) ... up to WINDOW chunks in flight
                                  <-    FlashAck(id, off+len)       cumulative
                                  <-    Nak(CHUNK_CRC | BAD_OFFSET) -> laptop goes back to
                                                                      the last acked offset
    FlashEnd(id, dry_run, force)  ->
                                  <-    FlashResult(id, ok, active_version, message)

The hub appends each good chunk to ``STORE/partial/<sha256>.part``; an
interrupted transfer (cable pulled, laptop closed, hub restarted) resumes
where the partial file ends when a FlashBegin with the same sha256 arrives,
whatever its transfer id. On FlashEnd the hub checks the size and sha256,
then :meth:`edge.store.BundleStore.install` verifies the signature, hashes,
version and golden self-test before switching atomically.

Windowing and retry rules (go-back-N):

* the laptop keeps at most ``window`` chunks (default 8 x 1,024 bytes) beyond
  the last acknowledged offset in flight;
* the hub writes a chunk only if its offset is exactly the next expected one
  and its CRC-32 matches; it then answers ``FlashAck(next_offset)``
  (cumulative);
* a chunk *before* the expected offset (a resend of what the hub has) is
  answered with ``FlashAck(next_offset)`` again, so the laptop skips ahead;
* a chunk *after* the expected offset (one before it was lost: a frame with
  a bad CRC-16 never reaches the hub) is dropped; the first such chunk per
  expected offset gets ``Nak(BAD_OFFSET, "expected offset N ...")``, later
  ones are silent so one loss causes one rewind; a chunk with a bad CRC-32
  always gets ``Nak(CHUNK_CRC)``;
* on either Nak the laptop goes back to its last acknowledged offset and
  sends from there; without any progress for ``min(timeout, 2 s)`` it does
  the same, and gives up after ``retries`` such stalls with "run the same
  command again to resume";
* a lost FlashResult is recovered by sending FlashEnd again: the hub repeats
  the result of a finished transfer id.

Management ops (``ManagementRequest.op`` and body -> response body):

=============  ======================================  =====================================
op             request body                            response body
=============  ======================================  =====================================
``status``     ``{}``                                  ``{"store": ..., "daemon": ..., "link": ...}``
``logs``       ``{"lines": N}`` (default 50)           parts ``{"lines": [str, ...]}``
``logs``       ``{"since": CURSOR, "max_bytes": N}``   parts ``{"text": str}``; the last one also
                                                       ``{"next": CURSOR, "more", "lost", "path"}``
``restart``    ``{}``                                  ``{"restarting": true, "pid"}``, then the
                                                       daemon exits non-zero (systemd restarts it)
``provision``  ``{"public_key", "hub_id", "replace"}``  ``{"hub_id", "key_fingerprint", "replaced"}``
``rollback``   ``{}``                                  ``{"active", "previous"}``
``versions``   ``{}``                                  ``{"versions": [...]}``
=============  ======================================  =====================================

A failed op answers ``ok=False`` with ``{"error": "one line"}``.

Reading the event log without losing lines (``logs`` with ``since``): a
cursor is ``{"inode": I, "offset": B, "head": HEX}``, a byte position in one
file of the rotated log (rotation renames ``events.jsonl`` to ``.1``, so the
inode follows the lines; ``head``, the file's first bytes, tells a reused
inode from the file it was). ``since: "end"`` returns no text and the cursor of the log's end
(take it before something happens), ``since: "start"`` reads from the oldest
rotated file, a cursor reads from where an earlier answer stopped, across
rotations. Only whole lines are returned (a line being written stays for the
next call); at most ``max_bytes`` (default 256 KiB) per answer, ``more`` says
there is more. ``lost`` is true when the cursor's file has been rotated away
(lines were lost between the two calls; reading resumes at the oldest file).
The text comes split over as many parts as the frames need;
:meth:`ManagementClient.log_since` joins them and loops while ``more``.

``restart`` answers first, then asks the daemon (``on_restart``) to stop
and exit with :data:`edge.daemon.RESTART_EXIT_STATUS`; a hub process that
cannot restart itself (no ``on_restart``) refuses the op.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

from .errors import FlashError, LiftGuardError
from .protocol import (
    DEFAULT_FLASH_CHUNK,
    MAX_FLASH_CHUNK,
    MAX_PAYLOAD,
    Capabilities,
    Feature,
    FlashAbort,
    FlashAck,
    FlashBegin,
    FlashChunk,
    FlashEnd,
    FlashResult,
    FrameDecoder,
    Hello,
    ManagementRequest,
    ManagementResponse,
    Message,
    Nak,
    NakReason,
    encode_message,
)

#: Largest bundle the hub accepts over the link, bytes.
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
#: Chunks the laptop keeps in flight before waiting for acknowledgements.
DEFAULT_WINDOW = 8
#: Body bytes per part of a long response (logs), leaving room for framing.
_PART_BYTES = MAX_PAYLOAD - 512
#: fsync the partial file every this many bytes.
_SYNC_EVERY = 256 * 1024
#: Event-log bytes one ``logs``/``since`` answer carries at most (one longer line is sent whole).
DEFAULT_LOG_CHUNK = 256 * 1024
#: Management ops the server answers.
OPS = ("status", "logs", "provision", "rollback", "versions", "restart")


class HubUnreachable(FlashError):
    """The hub did not answer on its management port."""


class HubRefused(FlashError):
    """The hub answered, but refused the request (the message says why)."""


def parse_port_url(port_url: str, default_baud: int) -> "tuple[str, int]":
    """Split ``serial:///dev/ttyX?baud=N``, a device path or a pyserial URL into (url, baud)."""
    if port_url.startswith("serial://"):
        parts = urlsplit(port_url)
        baud = parse_qs(parts.query).get("baud", [str(default_baud)])[0]
        try:
            return parts.path, int(baud)
        except ValueError:
            raise FlashError(f"port URL {port_url!r}: baud {baud!r} is not an integer") from None
    return port_url, default_baud


def open_serial(port_url: str, baud: int, timeout: float):
    """Open a serial port (device path or pyserial URL) with a clear error."""
    import serial

    url, baud = parse_port_url(port_url, baud)
    try:
        return serial.serial_for_url(url, baudrate=baud, timeout=timeout, write_timeout=30)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise HubUnreachable(f"cannot open hub port {port_url!r}: {exc}") from None


class _Transfer:
    """One incoming bundle transfer on the hub."""

    def __init__(self, transfer_id: int, total: int, sha_hex: str, path: Path) -> None:
        self.transfer_id = transfer_id
        self.total = total
        self.sha_hex = sha_hex
        self.path = path
        self.fh = None
        self.next_offset = 0
        self.naked_at: Optional[int] = None  # expected offset we already sent a Nak for
        self.unsynced = 0
        self.started = time.monotonic()

    def open(self) -> int:
        """Open the partial file, truncated to what is safely there; return the resume offset."""
        mode = "r+b" if self.path.exists() else "w+b"
        self.fh = open(self.path, mode)
        size = min(self.fh.seek(0, os.SEEK_END), self.total)
        self.fh.truncate(size)
        self.fh.seek(size)
        self.next_offset = size
        return size

    def write(self, data: bytes) -> None:
        """Append one good chunk."""
        self.fh.write(data)
        self.fh.flush()
        self.next_offset += len(data)
        self.unsynced += len(data)
        if self.unsynced >= _SYNC_EVERY:
            os.fsync(self.fh.fileno())
            self.unsynced = 0

    def finish(self) -> str:
        """Sync, close and return the sha256 of the received file."""
        if self.fh is not None:
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            self.fh = None
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def close(self) -> None:
        """Close the file without deleting it (kept for resuming)."""
        if self.fh is not None:
            try:
                self.fh.close()
            finally:
                self.fh = None


class ManagementServer:
    """The hub side of the management port.

    Args:
        port_url: Serial device (``/dev/ttyGS0``), ``serial://PATH?baud=N`` or
            any pyserial URL.
        store: The hub's :class:`edge.store.BundleStore`.
        status_provider: Returns the daemon's health as a JSON-able dict.
        event_log_path: The daemon's JSON-lines event log (for ``logs``).
        baud: Baud rate when the URL gives none.
        on_change: Called (in the event loop) after the active bundle changed.
        device_id: Reported in Capabilities; defaults to the store's hub id.
        firmware_version: Reported in Capabilities.
        on_restart: Called (in the event loop) after the answer to a
            ``restart`` op was sent; None: the op is refused.
    """

    def __init__(self, port_url: str, store: Any, status_provider: Callable[[], Dict[str, Any]],
                 event_log_path: Optional[Union[str, Path]], *, baud: int = 921600,
                 on_change: Optional[Callable[[], Any]] = None, device_id: Optional[str] = None,
                 firmware_version: str = "", on_restart: Optional[Callable[[], Any]] = None) -> None:
        self.port_url = port_url
        self.store = store
        self.status_provider = status_provider
        self.event_log_path = Path(event_log_path) if event_log_path else None
        self.baud = baud
        self.on_change = on_change
        self.on_restart = on_restart
        self.device_id = device_id
        self.firmware_version = firmware_version or _package_version()
        self.decoder = FrameDecoder(track_sequence=False)
        self.counters: Dict[str, int] = collections.Counter()
        self.transfer: Optional[_Transfer] = None
        self.results: Dict[int, FlashResult] = {}
        self._serial = None
        self._stop: Optional[asyncio.Event] = None  # created in serve()
        #: Set (in serve()) once the port is open and being read.
        self.opened: Optional[asyncio.Event] = None
        self._busy = False
        self.last_error = ""

    # ------------------------------------------------------------ link
    def _open(self):
        self._serial = open_serial(self.port_url, self.baud, timeout=0.05)
        return self._serial

    def _read(self) -> bytes:
        ser = self._serial
        data = ser.read(max(1, ser.in_waiting))
        if data and ser.in_waiting:
            data += ser.read(ser.in_waiting)
        return data

    def _send(self, message: Message) -> None:
        try:
            self._serial.write(encode_message(message))
            self.counters["sent"] += 1
        except Exception as exc:  # link gone: the read loop reopens it
            self.counters["send_errors"] += 1
            self.last_error = f"send failed: {exc}"

    async def serve(self) -> None:
        """Answer the management port until :meth:`stop` (reopens the port if it vanishes)."""
        import serial

        self._stop = asyncio.Event()
        if self.opened is None:
            self.opened = asyncio.Event()
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await loop.run_in_executor(None, self._open)
                self.opened.set()
            except HubUnreachable as exc:
                self.counters["open_errors"] += 1
                self.last_error = str(exc)
                await self._sleep(1.0)
                continue
            try:
                while not self._stop.is_set():
                    data = await loop.run_in_executor(None, self._read)
                    if not data:
                        continue
                    for message in self.decoder.feed(data):
                        await self.handle(message)
            except (serial.SerialException, OSError) as exc:
                self.counters["link_errors"] += 1
                self.last_error = f"management port: {exc}"
                await self._sleep(0.5)
            finally:
                try:
                    self._serial.close()
                except Exception:
                    pass
        if self.transfer is not None:
            self.transfer.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def stop(self) -> None:
        """Ask :meth:`serve` to return."""
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------ dispatch
    async def handle(self, message: Message) -> None:
        """Answer one message (public so tests and other links can drive the server)."""
        self.counters["received"] += 1
        if isinstance(message, FlashChunk):
            self._on_chunk(message)
        elif isinstance(message, FlashBegin):
            self._on_begin(message)
        elif isinstance(message, FlashEnd):
            await self._on_end(message)
        elif isinstance(message, FlashAbort):
            self._on_abort(message)
        elif isinstance(message, ManagementRequest):
            await self._on_request(message)
        elif isinstance(message, Hello):
            self._send(Capabilities(device_id=self.device_id or self.store.hub_id() or "unprovisioned",
                                    firmware_version=self.firmware_version,
                                    features=int(Feature.MANAGE | Feature.FLASH), max_payload=MAX_PAYLOAD,
                                    sensors=tuple(self.store.hub_sensors)))
        else:
            self.counters["ignored"] += 1
            self._send(Nak(of_type=message.TYPE, ref=0, reason=NakReason.UNSUPPORTED,
                           detail=f"{type(message).__name__} is not a management message"))

    # ------------------------------------------------------------ flash
    def _on_begin(self, m: FlashBegin) -> None:
        nak = lambda reason, detail: self._send(Nak(of_type=FlashBegin.TYPE, ref=m.transfer_id,
                                                    reason=reason, detail=detail[:250]))
        if self._busy:
            return nak(NakReason.BUSY, "the hub is installing a bundle; try again in a moment")
        if m.total_size > MAX_BUNDLE_BYTES:
            return nak(NakReason.OUT_OF_RANGE, f"bundle of {m.total_size} bytes; expected at most "
                       f"{MAX_BUNDLE_BYTES}")
        if not self.store.trusted_keys():
            return nak(NakReason.UNAUTHORIZED, "hub not provisioned: no trusted key; run 'host provision' first")
        sha_hex = bytes(m.sha256).hex()
        if self.transfer is not None and self.transfer.sha_hex != sha_hex:
            self.transfer.close()
            self.transfer = None
        for stale in self.store.partial_dir.glob("*.part"):
            if stale.name != f"{sha_hex}.part":
                stale.unlink(missing_ok=True)
        if self.transfer is None:
            self.transfer = _Transfer(m.transfer_id, m.total_size, sha_hex,
                                      self.store.partial_dir / f"{sha_hex}.part")
            try:
                resume = self.transfer.open()
            except OSError as exc:
                self.transfer = None
                return nak(NakReason.INTERNAL, f"cannot open partial file: {exc}")
        else:  # same bundle again: keep our file position, adopt the new id
            resume = self.transfer.next_offset
        if self.transfer.total != m.total_size:
            self.transfer.close()
            self.transfer.path.unlink(missing_ok=True)
            self.transfer = None
            return self._on_begin(m)
        self.transfer.transfer_id = m.transfer_id
        self.transfer.naked_at = None
        self.counters["flash_begins"] += 1
        if resume:
            self.counters["flash_resumes"] += 1
        self._send(FlashAck(transfer_id=m.transfer_id, next_offset=resume))

    def _on_chunk(self, m: FlashChunk) -> None:
        t = self.transfer
        if t is None or t.transfer_id != m.transfer_id:
            self.counters["chunk_no_transfer"] += 1
            return self._send(Nak(of_type=FlashChunk.TYPE, ref=m.transfer_id, reason=NakReason.NO_TRANSFER,
                                  detail=f"transfer {m.transfer_id} is not open; send FlashBegin"))
        if m.offset < t.next_offset:  # a resend of something we have: re-acknowledge
            self.counters["chunk_duplicate"] += 1
            return self._send(FlashAck(transfer_id=t.transfer_id, next_offset=t.next_offset))
        if m.offset > t.next_offset or not m.crc_ok:
            reason = NakReason.BAD_OFFSET if m.offset > t.next_offset else NakReason.CHUNK_CRC
            self.counters["chunk_bad_offset" if reason == NakReason.BAD_OFFSET else "chunk_bad_crc"] += 1
            if t.naked_at != t.next_offset or reason == NakReason.CHUNK_CRC:
                t.naked_at = t.next_offset
                self._send(Nak(of_type=FlashChunk.TYPE, ref=t.transfer_id, reason=reason,
                               detail=f"expected offset {t.next_offset}, got chunk at {m.offset}"
                               + (" with a bad crc32" if reason == NakReason.CHUNK_CRC else "")))
            return
        if m.offset + len(m.data) > t.total:
            return self._send(Nak(of_type=FlashChunk.TYPE, ref=t.transfer_id, reason=NakReason.OUT_OF_RANGE,
                                  detail=f"chunk at {m.offset} of {len(m.data)} bytes runs past the "
                                  f"declared size {t.total}"))
        try:
            t.write(bytes(m.data))
        except OSError as exc:
            return self._send(Nak(of_type=FlashChunk.TYPE, ref=t.transfer_id, reason=NakReason.INTERNAL,
                                  detail=f"cannot write partial file: {exc}"[:250]))
        t.naked_at = None
        self.counters["chunks_ok"] += 1
        self._send(FlashAck(transfer_id=t.transfer_id, next_offset=t.next_offset))

    def _result(self, t_id: int, ok: bool, message: str) -> FlashResult:
        active = self.store.active_version() or ""
        result = FlashResult(transfer_id=t_id, ok=ok, message=message[:MAX_PAYLOAD - 300],
                             active_version=active)
        self.results[t_id] = result
        while len(self.results) > 16:
            self.results.pop(next(iter(self.results)))
        self._send(result)
        return result

    async def _on_end(self, m: FlashEnd) -> None:
        if m.transfer_id in self.results and (self.transfer is None or self.transfer.transfer_id != m.transfer_id):
            self._send(self.results[m.transfer_id])  # our answer was lost: repeat it
            return
        t = self.transfer
        if t is None or t.transfer_id != m.transfer_id:
            self._send(Nak(of_type=FlashEnd.TYPE, ref=m.transfer_id, reason=NakReason.NO_TRANSFER,
                           detail=f"transfer {m.transfer_id} is not open"))
            return
        if t.next_offset != t.total:
            self._result(t.transfer_id, False, f"transfer incomplete: {t.next_offset} of {t.total} bytes "
                         f"received; send the rest and FlashEnd again")
            return
        got = t.finish()
        self.transfer = None
        if got != t.sha_hex:
            t.path.unlink(missing_ok=True)
            self._result(t.transfer_id, False, f"received bundle sha256 {got[:16]}... differs from the "
                         f"announced {t.sha_hex[:16]}...; discarded, flash again")
            return
        self._busy = True
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                None, lambda: self.store.install(t.path, force=m.force, dry_run=m.dry_run))
        except LiftGuardError as exc:
            self.counters["installs_refused"] += 1
            t.path.unlink(missing_ok=True)
            self._result(t.transfer_id, False, str(exc))
            return
        except Exception as exc:  # never let an install bug kill the management port
            self.counters["installs_failed"] += 1
            t.path.unlink(missing_ok=True)
            self._result(t.transfer_id, False, f"install failed: {type(exc).__name__}: {exc}")
            return
        finally:
            self._busy = False
        if not m.dry_run:
            t.path.unlink(missing_ok=True)
        self.counters["dry_runs" if m.dry_run else ("installs_ok" if result.installed else "installs_noop")] += 1
        self._result(t.transfer_id, True, result.message)
        if result.installed and self.on_change is not None:
            maybe = self.on_change()
            if asyncio.iscoroutine(maybe):
                await maybe

    def _on_abort(self, m: FlashAbort) -> None:
        t = self.transfer
        if t is not None and t.transfer_id == m.transfer_id:
            t.close()
            t.path.unlink(missing_ok=True)
            self.transfer = None
        self._send(FlashAck(transfer_id=m.transfer_id, next_offset=0))

    # ------------------------------------------------------------ requests
    async def _on_request(self, m: ManagementRequest) -> None:
        handler = getattr(self, f"_op_{m.op}", None) if m.op in OPS else None
        if handler is None:
            return self._send(ManagementResponse(request_id=m.request_id, ok=False, body={
                "error": f"unknown op {m.op!r}; expected one of {', '.join(OPS)}"}))
        try:
            loop = asyncio.get_running_loop()
            parts = await loop.run_in_executor(None, handler, dict(m.body))
        except LiftGuardError as exc:
            return self._send(ManagementResponse(request_id=m.request_id, ok=False, body={"error": str(exc)}))
        except Exception as exc:
            return self._send(ManagementResponse(request_id=m.request_id, ok=False, body={
                "error": f"{m.op} failed on the hub: {type(exc).__name__}: {exc}"}))
        if isinstance(parts, dict):
            parts = [parts]
        for i, body in enumerate(parts):
            self._send(ManagementResponse(request_id=m.request_id, ok=True, body=body, part=i,
                                          final=i == len(parts) - 1))
        if m.op == "rollback" and self.on_change is not None:
            maybe = self.on_change()
            if asyncio.iscoroutine(maybe):
                await maybe
        if m.op == "restart" and self.on_restart is not None:
            self.counters["restarts_requested"] += 1
            maybe = self.on_restart()
            if asyncio.iscoroutine(maybe):
                await maybe

    def _op_status(self, body: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Store, link and daemon health; the daemon part is split by top-level key to fit frames."""
        try:
            daemon = self.status_provider() if self.status_provider else {}
        except Exception as exc:
            daemon = {"error": f"status provider failed: {exc}"}
        daemon = json.loads(json.dumps(daemon if isinstance(daemon, dict) else {"value": daemon}, default=str))
        head = {"store": self.store.status(),
                "link": {"counters": dict(self.counters),
                         "decoder": {k: v for k, v in self.decoder.counters.items() if v},
                         "transfer": None if self.transfer is None else {
                             "sha256": self.transfer.sha_hex, "received": self.transfer.next_offset,
                             "total": self.transfer.total}},
                "daemon": {}}
        parts: List[Dict[str, Any]] = [json.loads(json.dumps(head, default=str))]
        chunk: Dict[str, Any] = {}
        size = 0
        for key, value in daemon.items():
            item = len(json.dumps({key: value}))
            if item > _PART_BYTES:  # one huge entry: say so instead of dropping the frame
                value, item = {"truncated": True, "bytes": item}, 60
            if chunk and size + item > _PART_BYTES:
                parts.append({"daemon": chunk})
                chunk, size = {}, 0
            chunk[key] = value
            size += item
        if chunk:
            parts.append({"daemon": chunk})
        return parts

    def _op_restart(self, body: Dict[str, Any]) -> Dict[str, Any]:
        if self.on_restart is None:
            raise FlashError("restart: this hub process cannot restart itself (only the edge run daemon "
                             "under a service manager can)")
        return {"restarting": True, "pid": os.getpid()}

    def _op_logs(self, body: Dict[str, Any]) -> List[Dict[str, Any]]:
        if "since" in body:
            return self._logs_since(body)
        try:
            n = int(body.get("lines", 50))
        except (TypeError, ValueError):
            raise FlashError(f"logs: lines {body.get('lines')!r} is not an integer") from None
        n = max(1, min(n, 10000))
        lines = tail_lines(self.event_log_path, n) if self.event_log_path else []
        parts: List[Dict[str, Any]] = []
        current: List[str] = []
        size = 0
        for line in lines:
            line = line[:_PART_BYTES // 2]
            if current and size + len(line) + 8 > _PART_BYTES:
                parts.append({"lines": current})
                current, size = [], 0
            current.append(line)
            size += len(json.dumps(line)) + 1
        parts.append({"lines": current, "path": str(self.event_log_path) if self.event_log_path else None})
        return parts

    def _logs_since(self, body: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The ``logs`` op with a cursor: whole lines after it, split into frame-sized parts."""
        try:
            max_bytes = int(body.get("max_bytes", DEFAULT_LOG_CHUNK))
        except (TypeError, ValueError):
            raise FlashError(f"logs: max_bytes {body.get('max_bytes')!r} is not an integer") from None
        max_bytes = max(1024, min(max_bytes, 16 * DEFAULT_LOG_CHUNK))
        since = body.get("since")
        if since not in ("start", "end") and not (
                isinstance(since, dict) and isinstance(since.get("inode"), int)
                and isinstance(since.get("offset"), int) and since["offset"] >= 0):
            raise FlashError(f"logs: since {since!r}; expected \"start\", \"end\" or a cursor "
                             f"{{\"inode\": I, \"offset\": B}} from an earlier answer")
        if self.event_log_path is None:
            text, cursor, more, lost = "", {"inode": 0, "offset": 0}, False, False
        else:
            text, cursor, more, lost = read_log_since(self.event_log_path, since, max_bytes)
        parts = [{"text": piece} for piece in _split_for_frames(text)]
        parts[-1].update(next=cursor, more=more, lost=lost, path=str(self.event_log_path))
        return parts

    def _op_provision(self, body: Dict[str, Any]) -> Dict[str, Any]:
        key = body.get("public_key")
        if not isinstance(key, str) or not key:
            raise FlashError("provision: public_key is missing; expected the key file's text")
        return self.store.provision(key.encode(), str(body.get("hub_id", "")),
                                    replace=bool(body.get("replace", False)))

    def _op_rollback(self, body: Dict[str, Any]) -> Dict[str, Any]:
        return self.store.rollback()

    def _op_versions(self, body: Dict[str, Any]) -> Dict[str, Any]:
        return {"versions": self.store.versions()}


def tail_lines(path: Optional[Path], n: int) -> List[str]:
    """The last ``n`` lines of a text file (fewer if shorter; [] if missing)."""
    if path is None or not Path(path).is_file():
        return []
    dq: Deque[str] = collections.deque(maxlen=n)
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            dq.append(line.rstrip("\n"))
    return list(dq)


def _log_files(path: Path) -> List[Path]:
    """The rotated event log's files, oldest first (``path.N`` ... ``path.1``, ``path``)."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: -int(p.suffix[1:]))
    return rotated + ([path] if path.exists() else [])


def read_log_since(path: Path, since: Any, max_bytes: int = DEFAULT_LOG_CHUNK) -> "tuple[str, Dict[str, int], bool, bool]":
    """Whole lines of a rotated log after a cursor (see the module docstring).

    Args:
        path: The log file (rotated files are ``path.1`` ... ``path.N``).
        since: ``"start"``, ``"end"`` or ``{"inode", "offset"}``.
        max_bytes: Bytes to return at most (a single longer line is returned whole).

    Returns:
        ``(text, next cursor, more, lost)``.

    Raises:
        FlashError: The log rotated three times while being read.
    """
    for _attempt in range(3):  # a rotation between listing and reading: list again
        try:
            files = _log_files(Path(path))
            inodes = [os.stat(f).st_ino for f in files]
        except OSError:
            continue
        if not files:
            lost = isinstance(since, dict) and since["inode"] != 0
            return "", {"inode": 0, "offset": 0}, False, lost
        if since == "end":
            end = os.stat(files[-1]).st_size
            return "", _cursor(files[-1], inodes[-1], end), False, False
        lost = False
        index, offset = 0, 0
        if isinstance(since, dict) and since["inode"] != 0:
            head = str(since.get("head", ""))
            if since["inode"] in inodes and _head(files[inodes.index(since["inode"])], len(head) // 2) == head:
                index, offset = inodes.index(since["inode"]), since["offset"]
            else:
                lost = True  # rotated away (or its inode reused by a newer file): resume at the oldest line
        chunks: List[bytes] = []
        size = 0
        cursor = _cursor(files[index], inodes[index], offset)
        more = False
        try:
            for i in range(index, len(files)):
                budget = max_bytes - size
                if budget <= 0:
                    more = True
                    break
                start = offset if i == index else 0
                with open(files[i], "rb") as fh:
                    st = os.fstat(fh.fileno())
                    if st.st_ino != inodes[i]:
                        raise OSError("rotated while reading")
                    if start > st.st_size:  # truncated under us: read it from its start
                        lost, start = True, 0
                    fh.seek(start)
                    data = fh.read(budget)
                    cut = data.rfind(b"\n") + 1
                    if cut == 0 and size == 0 and len(data) == budget:  # one line longer than the budget
                        data += fh.readline()
                        cut = len(data) if data.endswith(b"\n") else 0
                    if i < len(files) - 1 and len(data) < budget:  # a rotated file is complete: all of it
                        cut = len(data)
                chunk = data[:cut]
                chunks.append(chunk if not chunk or chunk.endswith(b"\n") else chunk + b"\n")
                size += cut
                cursor = _cursor(files[i], inodes[i], start + cut)
                if start + cut < st.st_size or len(data) == budget:  # stopped inside this file
                    more = len(data) == budget or i < len(files) - 1
                    break
        except OSError:
            continue
        return b"".join(chunks).decode("utf-8", errors="replace"), cursor, more, lost
    raise FlashError(f"logs: {path} kept rotating while being read; try again")


#: Bytes at the start of a log file a cursor remembers (inodes are reused after a file is deleted).
_HEAD_BYTES = 48


def _head(path: Path, limit: int = _HEAD_BYTES) -> str:
    """Hex of a file's first ``limit`` bytes ("" if unreadable)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).hex()
    except OSError:
        return ""


def _cursor(path: Path, inode: int, offset: int) -> Dict[str, Any]:
    """A cursor: the file's inode, the byte offset, and the file's first bytes up to the offset."""
    return {"inode": inode, "offset": offset, "head": _head(path, min(offset, _HEAD_BYTES))}


def _split_for_frames(text: str) -> List[str]:
    """Cut ``text`` into pieces whose JSON encoding fits one response part."""
    limit = _PART_BYTES - 256
    pieces: List[str] = []
    i = 0
    while i < len(text):
        step = min(len(text) - i, limit)
        while len(json.dumps(text[i:i + step])) > limit:
            step = max(1, step // 2)
        pieces.append(text[i:i + step])
        i += step
    return pieces or [""]


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("liftguard")
    except Exception:
        return "0"


# =====================================================================  client


class ManagementClient:
    """The laptop side: blocking calls over the hub's management port.

    Args:
        port: Serial device or pyserial URL (``serial://PATH?baud=N`` too).
        baud: Baud rate.
        timeout: Seconds to wait for each reply.
    """

    def __init__(self, port: str, *, baud: int = 921600, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self._serial = open_serial(port, baud, timeout=0.02)
        self.decoder = FrameDecoder(track_sequence=False)
        self._inbox: Deque[Message] = collections.deque()
        self._request_id = secrets.randbelow(0x10000)
        self.capabilities: Optional[Capabilities] = None
        try:
            self._serial.reset_input_buffer()
        except Exception:
            pass

    def close(self) -> None:
        """Close the port."""
        try:
            self._serial.close()
        except Exception:
            pass

    def __enter__(self) -> "ManagementClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def send(self, message: Message) -> None:
        """Write one message."""
        import serial

        try:
            self._serial.write(encode_message(message))
        except (serial.SerialException, OSError) as exc:
            raise HubUnreachable(f"hub port {self.port}: write failed: {exc}") from None

    def _pump(self) -> None:
        import serial

        try:
            data = self._serial.read(max(1, self._serial.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise HubUnreachable(f"hub port {self.port}: read failed: {exc}") from None
        if data:
            self._inbox.extend(self.decoder.feed(data))

    def poll(self) -> List[Message]:
        """Read what has arrived (waits at most ~20 ms) and return it."""
        self._pump()
        out = list(self._inbox)
        self._inbox.clear()
        return out

    def wait_for(self, accept: Callable[[Message], bool], timeout: Optional[float] = None,
                 what: str = "an answer") -> Message:
        """Return the first message ``accept`` takes; others are dropped.

        Raises:
            HubUnreachable: Nothing acceptable within ``timeout`` seconds.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            while self._inbox:
                message = self._inbox.popleft()
                if accept(message):
                    return message
            if time.monotonic() > deadline:
                raise HubUnreachable(f"no {what} from the hub on {self.port} within "
                                     f"{self.timeout if timeout is None else timeout:g} s; is it powered, "
                                     f"connected and running the LiftGuard hub service?")
            self._pump()

    def request(self, op: str, body: Optional[Dict[str, Any]] = None,
                timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """Run one management op and return the bodies of its parts.

        Raises:
            HubRefused: The hub answered ``ok=False`` (its error message).
            HubUnreachable: No answer.
        """
        self._ensure_hello()
        self._request_id = (self._request_id + 1) & 0xFFFF
        rid = self._request_id
        self.send(ManagementRequest(request_id=rid, op=op, body=body or {}))
        parts: List[Dict[str, Any]] = []
        while True:
            msg = self.wait_for(lambda x: (isinstance(x, ManagementResponse) and x.request_id == rid)
                                or (isinstance(x, Nak) and x.of_type == ManagementRequest.TYPE),
                                timeout, what=f"answer to {op!r}")
            if isinstance(msg, Nak):
                raise HubRefused(f"hub refused {op}: {msg.detail or msg.reason.name}")
            if not msg.ok:
                raise HubRefused(f"hub refused {op}: {msg.body.get('error', 'no reason given')}")
            parts.append(msg.body)
            if msg.final:
                return parts

    def call(self, op: str, body: Optional[Dict[str, Any]] = None, **kw: Any) -> Dict[str, Any]:
        """Run one op and merge its parts into one dict (nested dicts merged key by key)."""
        merged: Dict[str, Any] = {}
        for part in self.request(op, body, **kw):
            for key, value in part.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key].update(value)
                else:
                    merged[key] = value
        return merged

    def log_since(self, since: Any = "start", *, max_bytes: int = DEFAULT_LOG_CHUNK,
                  timeout: Optional[float] = None) -> "tuple[List[str], Dict[str, int], bool]":
        """Every whole event-log line after ``since`` (``"start"``, ``"end"`` or a cursor).

        Loops while the hub says there is more.

        Returns:
            ``(lines, next cursor, lost)``; ``lost`` is True when lines were
            rotated away before they could be read.
        """
        lines: List[str] = []
        lost = False
        cursor = since
        while True:
            parts = self.request("logs", {"since": cursor, "max_bytes": max_bytes}, timeout)
            text = "".join(p.get("text", "") for p in parts)
            last = parts[-1]
            if "next" not in last:
                raise HubRefused("the hub's logs op does not take a cursor (an older hub build); "
                                 "update the hub software")
            lines += [ln for ln in text.split("\n") if ln.strip()]
            lost = lost or bool(last.get("lost"))
            moved = last["next"] != cursor
            cursor = last["next"]
            if not last.get("more") or not moved:
                return lines, cursor, lost

    def hello(self, timeout: Optional[float] = None) -> Capabilities:
        """Ask the hub who it is, repeating Hello every 0.5 s until it answers.

        Hello is harmless to repeat, so this is how a session starts: it rides
        out a hub that is still opening its port or a line with stale bytes.

        Raises:
            HubUnreachable: No Capabilities within ``timeout`` seconds.
        """
        timeout = max(2.0, self.timeout if timeout is None else timeout)
        deadline = time.monotonic() + timeout
        while True:
            self.send(Hello(host_id="liftguard-host"))
            try:
                caps = self.wait_for(lambda m: isinstance(m, Capabilities),
                                     min(0.25, max(0.05, deadline - time.monotonic())), what="Capabilities")
                break
            except HubUnreachable:
                if time.monotonic() >= deadline:
                    raise HubUnreachable(
                        f"no answer from a LiftGuard hub on {self.port} within "
                        f"{timeout:g} s; is it powered, connected "
                        f"and running the hub service?") from None
        if not caps.features & Feature.MANAGE:
            raise HubRefused(f"the device on {self.port} ({caps.device_id}) is not a hub's management port "
                             f"(it does not offer management; is it a sensor hub?)")
        self.capabilities = caps
        return caps

    def _ensure_hello(self) -> None:
        if self.capabilities is None:
            self.hello()

    # ------------------------------------------------------------ flash
    def flash(self, data: bytes, *, name: str = "bundle.lgb", force: bool = False, dry_run: bool = False,
              chunk_size: int = DEFAULT_FLASH_CHUNK, window: int = DEFAULT_WINDOW,
              progress: Optional[Callable[[int, int], None]] = None, retries: int = 5,
              install_timeout: float = 180.0,
              interrupt_at: Optional[int] = None) -> Dict[str, Any]:
        """Send a bundle and have the hub verify and install it.

        Resumes automatically where an earlier interrupted transfer of the
        same bytes stopped.

        Args:
            data: The bundle's bytes.
            name: File name shown in the hub's log.
            force: Accept an older version.
            dry_run: The hub runs every check but installs nothing.
            chunk_size: Bytes per FlashChunk (1..4096).
            window: Chunks in flight before waiting for acknowledgements.
            progress: Called with (acked bytes, total) as acks arrive.
            retries: Timeouts without progress before giving up.
            install_timeout: Seconds to wait for the verdict after the last chunk.
            interrupt_at: Testing aid: raise :class:`HubUnreachable` once this
                many bytes are acknowledged, as if the cable were pulled.

        Returns:
            ``{"ok", "message", "active_version", "bytes", "resumed_from",
            "transfer_s", "total_s", "resends", "naks"}``.

        Raises:
            HubRefused: The hub refused the transfer or the bundle.
            HubUnreachable: The link died; run again to resume.
        """
        if not 1 <= chunk_size <= MAX_FLASH_CHUNK:
            raise FlashError(f"chunk size {chunk_size}; expected 1 to {MAX_FLASH_CHUNK}")
        total = len(data)
        if total == 0:
            raise FlashError("bundle is empty")
        digest = hashlib.sha256(data).digest()
        self._ensure_hello()
        tid = secrets.randbits(32)
        t0 = time.monotonic()
        self._inbox.clear()
        self.send(FlashBegin(transfer_id=tid, total_size=total, sha256=digest, name=name[:200]))
        first = self.wait_for(lambda m: (isinstance(m, FlashAck) and m.transfer_id == tid)
                              or (isinstance(m, Nak) and m.ref == tid), what="answer to FlashBegin")
        if isinstance(first, Nak):
            raise HubRefused(f"hub refused the transfer: {first.detail or first.reason.name}")
        acked = resumed_from = min(first.next_offset, total)
        sent = acked
        resends = naks = stalls = 0
        last_progress = time.monotonic()
        if progress:
            progress(acked, total)
        while acked < total:
            while sent < total and sent - acked < window * chunk_size:
                block = data[sent:sent + chunk_size]
                self.send(FlashChunk(transfer_id=tid, offset=sent, data=block))
                sent += len(block)
            for m in self.poll():
                if isinstance(m, FlashAck) and m.transfer_id == tid:
                    if m.next_offset > acked:
                        acked = min(m.next_offset, total)
                        last_progress = time.monotonic()
                        stalls = 0
                        if progress:
                            progress(acked, total)
                        if interrupt_at is not None and acked >= interrupt_at:
                            raise HubUnreachable(f"transfer interrupted at {acked} of {total} bytes (test)")
                    if sent < acked:
                        sent = acked
                elif isinstance(m, Nak) and m.ref == tid:
                    if m.reason in (NakReason.CHUNK_CRC, NakReason.BAD_OFFSET):
                        naks += 1
                        resends += max(0, sent - acked) // chunk_size
                        sent = acked  # go back to the first unacknowledged byte
                    else:
                        raise HubRefused(f"hub stopped the transfer at {acked} of {total} bytes: "
                                         f"{m.detail or m.reason.name}")
                elif isinstance(m, FlashAbort) and m.transfer_id == tid:
                    raise HubRefused(f"hub aborted the transfer: {m.reason}")
            if time.monotonic() - last_progress > min(self.timeout, 2.0):
                stalls += 1
                if stalls > retries:
                    raise HubUnreachable(f"link to the hub on {self.port} lost at {acked} of {total} bytes; "
                                         f"run the same command again to resume from there")
                resends += max(0, sent - acked) // chunk_size
                sent = acked
                last_progress = time.monotonic()
        transfer_s = time.monotonic() - t0
        end = FlashEnd(transfer_id=tid, dry_run=dry_run, force=force)
        for attempt in range(3):
            self.send(end)
            try:
                result = self.wait_for(lambda m: isinstance(m, FlashResult) and m.transfer_id == tid,
                                       install_timeout, what="verdict on the bundle")
                break
            except HubUnreachable:
                if attempt == 2:
                    raise
        out = {"ok": result.ok, "message": result.message, "active_version": result.active_version,
               "bytes": total, "resumed_from": resumed_from, "transfer_s": round(transfer_s, 4),
               "total_s": round(time.monotonic() - t0, 4), "resends": resends, "naks": naks}
        if not result.ok:
            raise HubRefused(f"hub refused the bundle: {result.message} "
                             f"(active bundle: {result.active_version or 'none'})")
        return out


__all__ = ["ManagementServer", "ManagementClient", "HubUnreachable", "HubRefused", "tail_lines",
           "parse_port_url", "open_serial", "DEFAULT_WINDOW", "read_log_since", "OPS"]
