"""The abstract IMU source and the records every source yields.

A source turns one physical or emulated link (a serial sensor hub, six BLE
IMUs, a replayed recording, the in-process virtual bus) into one async stream
of :class:`SensorReading` and :class:`SourceStatus` events. Downstream, the
aligner puts the readings on one 25 Hz grid; nothing after the source knows
which link they came from.

Design follows bleak (one client class, ``async with``, keyword-only timeouts)
and python-can (one abstract bus, interfaces registered by name, imported on
demand; see :mod:`edge.sources`).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, AsyncIterator, Dict, Optional, Union

import numpy as np


@dataclasses.dataclass
class SensorReading:
    """One sample of one IMU.

    Attributes:
        sensor: Sensor name, one of :data:`edge.layout.SENSORS`.
        seq: The sensor's own sequence number (wraps at the link's width).
        t_sensor: Time stamp on the sensor's clock, seconds. For replayed
            recordings this is the recording's ``Time_stp``.
        t_host: Monotonic host time when the reading arrived, seconds.
        values: float32 array of 6: accelerometer x, y, z in g then gyroscope
            x, y, z in deg/s, in the sensor's own axes.
    """

    sensor: str
    seq: int
    t_sensor: float
    t_host: float
    values: np.ndarray


@dataclasses.dataclass
class SourceStatus:
    """A change in a sensor's or the link's health.

    Attributes:
        sensor: Sensor name, or ``None`` for the whole link.
        state: ``"connected"``, ``"lost"``, ``"reconnecting"``, ``"fault"``
            or ``"closed"``.
        detail: Human-readable explanation naming the value and what was
            expected (e.g. ``"CRC 0x12ab != 0x34cd"``).
        t_host: Monotonic host time of the change.
    """

    sensor: Optional[str]
    state: str
    detail: str = ""
    t_host: float = 0.0


SourceEvent = Union[SensorReading, SourceStatus]


class ImuSource(abc.ABC):
    """One link delivering the six IMUs' samples.

    Use as an async context manager::

        async with open_source("serial:///dev/ttyACM0?baud=921600") as src:
            async for event in src.events():
                ...

    Subclasses implement :meth:`open`, :meth:`close` and :meth:`events`, and
    may override :meth:`send_buzz` when the link can drive the belt's motor.
    """

    #: URL scheme(s) the subclass handles, for error messages.
    scheme: str = ""

    def __init__(self, url: str) -> None:
        self.url = url
        #: Counters of everything odd seen on the link (bad frames, gaps, ...).
        self.counters: Dict[str, int] = {}

    def count(self, what: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``what``."""
        self.counters[what] = self.counters.get(what, 0) + n

    @abc.abstractmethod
    async def open(self, *, timeout: float = 10.0) -> None:
        """Connect to the link. Raises :class:`edge.errors.SourceError`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; safe to call twice."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[SourceEvent]:
        """Yield readings and status changes until closed or exhausted."""

    async def send_buzz(self, pattern_ms: "list[int]") -> bool:
        """Ask the link to drive the belt motor with on/off durations in ms.

        Returns:
            True if the link accepted the command, False if it has no motor.
        """
        return False

    def health(self) -> Dict[str, Any]:
        """Return a JSON-able summary of the link's state and counters."""
        return {"url": self.url, "counters": dict(self.counters)}

    async def __aenter__(self) -> "ImuSource":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
