"""``virtual://CHANNEL``: an in-process bus shared by tests, rigs and the hub.

Like python-can's ``virtual`` interface, every :class:`VirtualSource` opened on
the same channel name (in one process) receives what producers push onto that
channel's :class:`VirtualBus`. Producers (a test, an emulated rig, a replay
feeder) call :meth:`VirtualBus.push_reading`, :meth:`VirtualBus.push_status`
or :meth:`VirtualBus.push`; they may do so from any thread. The hub consumes
through the ordinary :class:`edge.sources.ImuSource` interface.

URL format::

    virtual://CHANNEL              e.g. virtual://rig0
    virtual://CHANNEL?queue=N      bound each consumer's queue to N events
                                   (default 100000; on overflow the oldest
                                   event is dropped and counted "overflow")

Buzz commands sent by the hub (:meth:`VirtualSource.send_buzz`) are recorded
on the bus (:attr:`VirtualBus.buzzes`, with the host time they arrived) and
passed to any callbacks registered with :meth:`VirtualBus.on_buzz`, so a rig
can observe them the way a sensor hub's motor would.

:meth:`VirtualBus.end` tells every consumer that the stream is over: their
``events()`` iterators finish after the queued events.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any, AsyncIterator, Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import ConfigError, SourceError
from ..layout import SENSORS
from .base import ImuSource, SensorReading, SourceEvent, SourceStatus

_END = object()  # end-of-stream marker

_BUSES: Dict[str, "VirtualBus"] = {}
_BUSES_LOCK = threading.Lock()


def get_bus(channel: str) -> "VirtualBus":
    """Return the bus named ``channel``, creating it on first use."""
    with _BUSES_LOCK:
        bus = _BUSES.get(channel)
        if bus is None:
            bus = _BUSES[channel] = VirtualBus(channel)
        return bus


def remove_bus(channel: str) -> None:
    """Forget the bus named ``channel`` (tests call this to start afresh)."""
    with _BUSES_LOCK:
        _BUSES.pop(channel, None)


class _Subscriber:
    """One consumer's queue, fed from any thread, read on the consumer's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxlen: int) -> None:
        self.loop = loop
        self.items: Deque[Any] = collections.deque()
        self.maxlen = maxlen
        self.lock = threading.Lock()
        self.wakeup = asyncio.Event()
        self.overflow = 0

    def put(self, item: Any) -> None:
        with self.lock:
            if len(self.items) >= self.maxlen and item is not _END:
                self.items.popleft()
                self.overflow += 1
            self.items.append(item)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.wakeup.set()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wakeup.set)

    def take_all(self) -> List[Any]:
        with self.lock:
            items = list(self.items)
            self.items.clear()
        return items


class VirtualBus:
    """A named in-process channel of IMU events.

    Args:
        channel: The bus name (the URL's host part).
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._subscribers: List[_Subscriber] = []
        self._lock = threading.Lock()
        #: Buzz commands received from consumers: (host time, pattern in ms).
        self.buzzes: List[Tuple[float, List[int]]] = []
        self._buzz_callbacks: List[Callable[[List[int]], None]] = []
        #: Whether a producer may still push (False after :meth:`end`).
        self.ended = False

    # -- producer side ----------------------------------------------------
    def push(self, event: SourceEvent) -> None:
        """Deliver one event to every consumer currently open on the bus."""
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.put(event)

    def push_reading(self, sensor: str, seq: int, t_sensor: float, values: "np.ndarray | list",
                     t_host: Optional[float] = None) -> SensorReading:
        """Build and deliver a :class:`SensorReading`.

        Args:
            sensor: One of :data:`edge.layout.SENSORS`.
            seq: The sensor's sequence number.
            t_sensor: Time on the sensor's clock, seconds.
            values: Six numbers: accel x, y, z (g) then gyro x, y, z (deg/s).
            t_host: Arrival time; defaults to ``time.monotonic()``.

        Raises:
            SourceError: If ``sensor`` is unknown or ``values`` is not six numbers.
        """
        if sensor not in SENSORS:
            raise SourceError(f"virtual://{self.channel}: sensor {sensor!r} is unknown; "
                              f"expected one of {', '.join(SENSORS)}")
        vals = np.asarray(values, dtype=np.float32).reshape(-1)
        if vals.shape != (6,):
            raise SourceError(f"virtual://{self.channel}: sensor {sensor} reading has {vals.size} "
                              f"values; expected 6 (accel x,y,z then gyro x,y,z)")
        reading = SensorReading(sensor=sensor, seq=int(seq), t_sensor=float(t_sensor),
                                t_host=time.monotonic() if t_host is None else float(t_host),
                                values=vals)
        self.push(reading)
        return reading

    def push_status(self, sensor: Optional[str], state: str, detail: str = "") -> SourceStatus:
        """Build and deliver a :class:`SourceStatus`."""
        status = SourceStatus(sensor=sensor, state=state, detail=detail, t_host=time.monotonic())
        self.push(status)
        return status

    def end(self) -> None:
        """Finish the stream: consumers stop after the events already queued."""
        self.ended = True
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.put(_END)

    def on_buzz(self, callback: Callable[[List[int]], None]) -> None:
        """Call ``callback(pattern_ms)`` whenever a consumer sends a buzz."""
        self._buzz_callbacks.append(callback)

    # -- consumer side ----------------------------------------------------
    def subscribe(self, loop: asyncio.AbstractEventLoop, maxlen: int) -> _Subscriber:
        """Register a consumer queue (used by :class:`VirtualSource`)."""
        sub = _Subscriber(loop, maxlen)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        """Remove a consumer queue."""
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    @property
    def n_consumers(self) -> int:
        """How many consumers are open on the bus."""
        with self._lock:
            return len(self._subscribers)

    def _buzz(self, pattern_ms: List[int]) -> None:
        self.buzzes.append((time.monotonic(), list(pattern_ms)))
        for cb in list(self._buzz_callbacks):
            cb(list(pattern_ms))


class VirtualSource(ImuSource):
    """The hub's end of a :class:`VirtualBus` (``virtual://CHANNEL``).

    Args:
        url: ``virtual://CHANNEL[?queue=N]``.
    """

    scheme = "virtual"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        channel = (parts.netloc + parts.path).strip("/")
        if parts.scheme != "virtual" or not channel:
            raise ConfigError(f"source URL {url!r}: expected virtual://CHANNEL, e.g. virtual://rig0")
        query = parse_qs(parts.query)
        unknown = set(query) - {"queue"}
        if unknown:
            raise ConfigError(f"source URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                              f"expected only queue=N")
        try:
            self.maxlen = int(query.get("queue", ["100000"])[0])
            if self.maxlen < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(f"source URL {url!r}: queue={query['queue'][0]!r} is not a positive "
                              f"integer") from None
        self.channel = channel
        self.bus = get_bus(channel)
        self._sub: Optional[_Subscriber] = None
        self._closed = False

    async def open(self, *, timeout: float = 10.0) -> None:
        """Subscribe to the bus; events pushed from now on are received."""
        if self._sub is None:
            self._sub = self.bus.subscribe(asyncio.get_running_loop(), self.maxlen)
            self._closed = False

    async def close(self) -> None:
        """Unsubscribe; ``events()`` finishes. Safe to call twice."""
        self._closed = True
        if self._sub is not None:
            self.bus.unsubscribe(self._sub)
            self._sub.wakeup.set()
            self._sub = None

    async def events(self) -> AsyncIterator[SourceEvent]:
        """Yield the bus's events until :meth:`VirtualBus.end` or :meth:`close`."""
        if self._sub is None:
            raise SourceError(f"{self.url}: events() before open()")
        sub = self._sub
        while not self._closed:
            await sub.wakeup.wait()
            sub.wakeup.clear()
            for item in sub.take_all():
                if item is _END:
                    return
                if isinstance(item, SensorReading):
                    self.count("readings")
                yield item
            if sub.overflow:
                self.count("overflow", sub.overflow)
                sub.overflow = 0

    async def send_buzz(self, pattern_ms: "list[int]") -> bool:
        """Record the buzz on the bus (a rig's motor); always accepted."""
        self.bus._buzz(list(pattern_ms))
        return True

    def health(self) -> Dict[str, Any]:
        """Link summary: the channel, consumer count and counters."""
        h = super().health()
        h.update(channel=self.channel, consumers=self.bus.n_consumers)
        return h
