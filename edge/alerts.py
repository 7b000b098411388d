"""Alert outputs: the belt's buzzer on a GPIO pin, the sensor hub's motor, a log line.

Each classified lift ends in :meth:`AlertDispatcher.alert` with its risk
level. Every level has its own pattern of on/off durations in milliseconds
(``[on, off, on, ...]``), configurable in hub.toml ``[alerts.patterns]``;
only the levels listed in ``levels`` (default: ``high``) are signalled, the
others are logged only. Defaults:

=========  ===========================  =================================
level      pattern (ms)                 feel
=========  ===========================  =================================
low        ``[]``                       nothing
medium     ``[120]``                    one short tick (if enabled)
high       ``[400, 150, 400, 150, 400]`` three long buzzes
=========  ===========================  =================================

Output specs (``--alert`` flag, repeatable; hub.toml ``alerts.outputs``):

``gpio:PIN[?pwm=1&freq=HZ&duty=D&active_high=0&mock=1]``
    A gpiozero :class:`~gpiozero.Buzzer` on BCM pin ``PIN`` (an active
    buzzer or a motor driver's enable), or with ``pwm=1`` a
    :class:`~gpiozero.PWMOutputDevice` driven at ``freq`` Hz (default 2000)
    and duty ``duty`` (default 0.5) for a passive piezo. ``mock=1`` uses
    gpiozero's :class:`~gpiozero.pins.mock.MockFactory` (rigs, demos); tests
    pass their own ``pin_factory``.
``hub``
    The buzz command to the sensor hub (``source.send_buzz(pattern)``), for a
    motor wired to the microcontroller.
``log``
    Log only (logger ``liftguard.alert``).

The first "on" of a pattern happens synchronously inside
:meth:`AlertDispatcher.alert`, before it awaits anything, so the time from
the classification to the pin is as short as the code path allows; the rest
of the pattern plays in an asyncio task. A new alert on the same output
cancels the pattern in progress (the output is switched off first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

from .errors import ConfigError
from .layout import CLASS_NAMES

LOG = logging.getLogger("liftguard.alert")

#: Default on/off patterns per risk level, milliseconds.
DEFAULT_PATTERNS: Dict[str, List[int]] = {
    "low": [],
    "medium": [120],
    "high": [400, 150, 400, 150, 400],
}

#: Levels signalled by default (the others are logged only).
DEFAULT_LEVELS = ("high",)

MAX_STEP_MS = 10_000
MAX_TOTAL_MS = 20_000


def validate_patterns(patterns: Mapping[str, Any], where: str = "alerts.patterns") -> Dict[str, List[int]]:
    """Check a risk-to-pattern table and fill in defaults.

    Args:
        patterns: Risk name to a list of millisecond durations.
        where: Name of the setting, for messages.

    Returns:
        A complete table (every class name present), lists of int.

    Raises:
        ConfigError: A risk name, duration or the table's distinctness is wrong.
    """
    out = {k: list(v) for k, v in DEFAULT_PATTERNS.items()}
    for risk, pattern in patterns.items():
        if risk not in CLASS_NAMES:
            raise ConfigError(f"{where}: unknown risk level {risk!r}; expected one of {', '.join(CLASS_NAMES)}")
        if not isinstance(pattern, (list, tuple)):
            raise ConfigError(f"{where}.{risk} = {pattern!r}; expected a list of on/off durations in ms")
        steps = []
        for i, step in enumerate(pattern):
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not (1 <= step <= MAX_STEP_MS):
                raise ConfigError(f"{where}.{risk}[{i}] = {step!r}; expected a duration of 1 to "
                                  f"{MAX_STEP_MS} ms")
            steps.append(int(step))
        if sum(steps) > MAX_TOTAL_MS:
            raise ConfigError(f"{where}.{risk} lasts {sum(steps)} ms; expected at most {MAX_TOTAL_MS} ms")
        out[risk] = steps
    seen: Dict[tuple, str] = {}
    for risk in CLASS_NAMES:
        key = tuple(out[risk])
        if key in seen and key:
            raise ConfigError(f"{where}: levels {seen[key]!r} and {risk!r} share the pattern {list(key)}; "
                              f"each level needs its own pattern")
        seen[key] = risk
    return out


def validate_levels(levels: Sequence[Any], where: str = "alerts.levels") -> List[str]:
    """Check the list of signalled risk levels."""
    out = []
    for lv in levels:
        if lv not in CLASS_NAMES:
            raise ConfigError(f"{where}: {lv!r} is not a risk level; expected some of {', '.join(CLASS_NAMES)}")
        out.append(str(lv))
    return out


class AlertOutput:
    """Base class of an output that plays on/off patterns."""

    name = "output"

    def __init__(self) -> None:
        self._task: Optional[asyncio.Task] = None
        #: How many patterns were started.
        self.played = 0

    def _on(self) -> None:
        raise NotImplementedError

    def _off(self) -> None:
        raise NotImplementedError

    async def _rest(self, pattern: List[int]) -> None:
        try:
            for i, ms in enumerate(pattern):
                if i:
                    (self._on if i % 2 == 0 else self._off)()
                await asyncio.sleep(ms / 1000.0)
        finally:
            self._off()

    def start(self, pattern: List[int]) -> None:
        """Start ``pattern``: first "on" now, the rest in a task."""
        if not pattern:
            return
        self.cancel()
        self.played += 1
        self._on()
        self._task = asyncio.get_running_loop().create_task(self._rest(list(pattern)))

    def cancel(self) -> None:
        """Stop a pattern in progress and switch off."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self._off()
        self._task = None

    async def wait(self) -> None:
        """Wait until the pattern in progress has finished."""
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def close(self) -> None:
        """Switch off and release the output."""
        self.cancel()

    def describe(self) -> Dict[str, Any]:
        """JSON-able description for health."""
        return {"output": self.name, "played": self.played}


class GpioOutput(AlertOutput):
    """A buzzer or vibration motor on a GPIO pin, through gpiozero.

    Args:
        pin: BCM pin number.
        pwm: Use a PWMOutputDevice (passive piezo) instead of a Buzzer.
        frequency: PWM frequency, Hz.
        duty: PWM duty cycle while on, 0..1.
        active_high: Whether "on" drives the pin high.
        pin_factory: A gpiozero pin factory (tests: ``MockFactory()``).
    """

    name = "gpio"

    def __init__(self, pin: int, *, pwm: bool = False, frequency: float = 2000.0, duty: float = 0.5,
                 active_high: bool = True, pin_factory: Any = None) -> None:
        super().__init__()
        try:
            from gpiozero import Buzzer, PWMOutputDevice
        except ImportError as exc:  # pragma: no cover - hub extra missing
            raise ConfigError(f"alert gpio:{pin} needs gpiozero (pip install 'liftguard[hub]'): {exc}") from None
        from gpiozero.exc import GPIOZeroError

        self.pin = pin
        self.pwm = pwm
        self.duty = duty
        try:
            if pwm:
                self.device = PWMOutputDevice(pin, active_high=active_high, frequency=frequency,
                                              pin_factory=pin_factory)
            else:
                self.device = Buzzer(pin, active_high=active_high, pin_factory=pin_factory)
        except (GPIOZeroError, OSError, ValueError) as exc:
            raise ConfigError(f"alert gpio:{pin}: cannot open the pin: {exc} (on a machine without GPIO use "
                              f"gpio:{pin}?mock=1)") from None
        self.device.off()

    def _on(self) -> None:
        if self.pwm:
            self.device.value = self.duty
        else:
            self.device.on()

    def _off(self) -> None:
        self.device.off()

    def close(self) -> None:
        super().close()
        try:
            self.device.close()
        except Exception:  # pragma: no cover - best effort on shutdown
            pass

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "pin": self.pin, "pwm": self.pwm}


class HubBuzzOutput(AlertOutput):
    """The buzz command to the sensor hub's motor (``source.send_buzz``)."""

    name = "hub"

    def __init__(self, source: Any = None) -> None:
        super().__init__()
        self.source = source
        self.sent = 0
        self.refused = 0

    def start(self, pattern: List[int]) -> None:
        """Send the whole pattern to the sensor hub (it times the motor itself)."""
        if not pattern:
            return
        self.played += 1
        if self.source is None:
            self.refused += 1
            return
        self._task = asyncio.get_running_loop().create_task(self._send(list(pattern)))

    async def _send(self, pattern: List[int]) -> None:
        try:
            ok = await self.source.send_buzz(pattern)
        except Exception as exc:  # a failing link must not stop the hub
            LOG.warning("buzz command to the sensor hub failed: %s", exc)
            ok = False
        if ok:
            self.sent += 1
        else:
            self.refused += 1
            if self.refused == 1:
                LOG.warning("the source %s did not accept the buzz command (no motor on this link?)",
                            getattr(self.source, "url", self.source))

    def _on(self) -> None:  # the hub times the motor itself
        pass

    def _off(self) -> None:
        pass

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "sent": self.sent, "refused": self.refused}


class LogOutput(AlertOutput):
    """Log-only output."""

    name = "log"

    def start(self, pattern: List[int]) -> None:
        self.played += 1
        LOG.warning("ALERT pattern %s", pattern)

    def _on(self) -> None:
        pass

    def _off(self) -> None:
        pass


def parse_output_spec(spec: str, *, source: Any = None, pin_factory: Any = None) -> AlertOutput:
    """Build an output from ``gpio:PIN[?...]``, ``hub`` or ``log``.

    Raises:
        ConfigError: The spec is malformed (the message quotes it).
    """
    spec = spec.strip()
    if spec == "log":
        return LogOutput()
    if spec == "hub":
        return HubBuzzOutput(source)
    if spec.startswith("gpio:"):
        parts = urlsplit(spec)
        pin_text = parts.path
        try:
            pin = int(pin_text)
            if not 0 <= pin <= 53:
                raise ValueError
        except ValueError:
            raise ConfigError(f"alert {spec!r}: pin {pin_text!r} is not a BCM pin number 0..53") from None
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(q) - {"pwm", "freq", "duty", "active_high", "mock"}
        if unknown:
            raise ConfigError(f"alert {spec!r}: unknown option(s) {', '.join(sorted(unknown))}; expected pwm, "
                              f"freq, duty, active_high, mock")
        try:
            freq = float(q.get("freq", 2000))
            duty = float(q.get("duty", 0.5))
        except ValueError:
            raise ConfigError(f"alert {spec!r}: freq and duty must be numbers") from None
        if not (0 < duty <= 1) or freq <= 0:
            raise ConfigError(f"alert {spec!r}: duty={duty:g} freq={freq:g}; expected 0 < duty <= 1 and freq > 0")
        flags = {}
        for key in ("pwm", "active_high", "mock"):
            if key in q:
                if q[key] not in ("0", "1"):
                    raise ConfigError(f"alert {spec!r}: {key}={q[key]!r}; expected 0 or 1")
                flags[key] = q[key] == "1"
        factory = pin_factory
        if factory is None and flags.get("mock"):
            from gpiozero.pins.mock import MockFactory, MockPWMPin

            factory = MockFactory(pin_class=MockPWMPin) if flags.get("pwm") else MockFactory()
        return GpioOutput(pin, pwm=flags.get("pwm", False), frequency=freq, duty=duty,
                          active_high=flags.get("active_high", True), pin_factory=factory)
    raise ConfigError(f"alert {spec!r}: expected gpio:PIN, hub or log")


class AlertDispatcher:
    """Plays the pattern of a risk level on every configured output.

    Args:
        outputs: The outputs.
        patterns: Risk level to pattern (validated, defaults filled in).
        levels: Levels that are signalled; others are logged only.
    """

    def __init__(self, outputs: Sequence[AlertOutput], patterns: Optional[Mapping[str, Any]] = None,
                 levels: Sequence[str] = DEFAULT_LEVELS) -> None:
        self.outputs = list(outputs)
        self.patterns = validate_patterns(patterns or {})
        self.levels = validate_levels(levels)
        self.counts: Dict[str, int] = {r: 0 for r in CLASS_NAMES}
        self.signalled = 0

    def alert(self, risk: str) -> Optional[float]:
        """Signal ``risk`` on every output; call from the event loop.

        Returns:
            ``time.monotonic()`` right after the outputs were switched on, or
            None when the level is not signalled.
        """
        self.counts[risk] = self.counts.get(risk, 0) + 1
        pattern = self.patterns.get(risk, [])
        if risk not in self.levels or not pattern:
            LOG.info("lift classified %s (not signalled)", risk)
            return None
        for out in self.outputs:
            try:
                out.start(pattern)
            except Exception as exc:  # one broken output must not stop the others
                LOG.error("alert output %s failed: %s", out.name, exc)
        self.signalled += 1
        return time.monotonic()

    async def wait(self) -> None:
        """Wait for all patterns in progress to finish."""
        for out in self.outputs:
            await out.wait()

    def close(self) -> None:
        """Switch everything off and release the pins."""
        for out in self.outputs:
            out.close()

    def describe(self) -> Dict[str, Any]:
        """JSON-able summary for health."""
        return {"levels": self.levels, "patterns": self.patterns, "counts": dict(self.counts),
                "signalled": self.signalled, "outputs": [o.describe() for o in self.outputs]}
