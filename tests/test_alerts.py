"""Alert outputs: gpiozero pin histories (MockFactory), the hub's buzz command, log-only, patterns."""

from __future__ import annotations

import asyncio
import logging

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.alerts import (DEFAULT_PATTERNS, AlertDispatcher, GpioOutput, HubBuzzOutput, LogOutput,
                         parse_output_spec, validate_patterns)
from edge.errors import ConfigError
from edge.sources.virtual import VirtualSource, remove_bus


def on_off_durations(states):
    """(state, seconds it lasted) from a MockPin history (timestamps are deltas)."""
    out = []
    for prev, nxt in zip(states, states[1:]):
        out.append((prev.state, nxt.timestamp))
    return out


async def test_high_risk_plays_its_pattern_on_the_buzzer_pin():
    factory = MockFactory()
    out = GpioOutput(17, pin_factory=factory)
    alerts = AlertDispatcher([out], {"high": [80, 40, 80, 40, 80]})
    t = alerts.alert("high")
    assert t is not None
    pin = factory.pin(17)
    assert pin.state is True  # switched on before alert() returned
    await alerts.wait()
    states = [s.state for s in pin.states]
    assert states == [False, True, False, True, False, True, False]
    durations = on_off_durations(pin.states)[1:]  # skip the initial off
    want = [(True, 0.08), (False, 0.04), (True, 0.08), (False, 0.04), (True, 0.08)]
    for (state, secs), (w_state, w_secs) in zip(durations, want):
        assert state == w_state
        assert w_secs - 0.005 <= secs <= w_secs + 0.05
    alerts.close()


async def test_each_level_has_its_own_pattern_and_only_configured_levels_buzz():
    factory = MockFactory()
    alerts = AlertDispatcher([GpioOutput(5, pin_factory=factory)], {"medium": [30], "high": [60, 20, 60]},
                             levels=["medium", "high"])
    assert alerts.alert("low") is None  # low is not signalled
    assert [s.state for s in factory.pin(5).states] == [False]
    alerts.alert("medium")
    await alerts.wait()
    assert [s.state for s in factory.pin(5).states] == [False, True, False]
    alerts.alert("high")
    await alerts.wait()
    assert [s.state for s in factory.pin(5).states] == [False, True, False, True, False, True, False]
    assert alerts.counts == {"low": 1, "medium": 1, "high": 1}
    assert alerts.signalled == 2


async def test_default_levels_buzz_on_high_only():
    factory = MockFactory()
    alerts = AlertDispatcher([GpioOutput(6, pin_factory=factory)])
    assert alerts.alert("medium") is None and alerts.alert("low") is None
    assert alerts.alert("high") is not None
    alerts.close()
    assert factory.pin(6).state is False
    assert alerts.patterns == DEFAULT_PATTERNS


async def test_pwm_output_drives_the_duty_cycle():
    factory = MockFactory(pin_class=MockPWMPin)
    out = parse_output_spec("gpio:18?pwm=1&freq=2500&duty=0.3", pin_factory=factory)
    alerts = AlertDispatcher([out], {"high": [30, 20, 30]})
    alerts.alert("high")
    await alerts.wait()
    assert [s.state for s in factory.pin(18).states] == [0, 0.3, 0, 0.3, 0]
    assert factory.pin(18).frequency == 2500


async def test_a_new_alert_cancels_the_pattern_in_progress():
    factory = MockFactory()
    alerts = AlertDispatcher([GpioOutput(17, pin_factory=factory)], {"high": [500, 100, 500]})
    alerts.alert("high")
    await asyncio.sleep(0.02)
    alerts.alert("high")
    await alerts.wait()
    states = [s.state for s in factory.pin(17).states]
    # on, (cancel: off), on, off, on, off
    assert states == [False, True, False, True, False, True, False]


async def test_hub_output_sends_the_buzz_command_over_the_source():
    remove_bus("alerts-test")
    source = VirtualSource("virtual://alerts-test")
    await source.open()
    heard = []
    source.bus.on_buzz(heard.append)
    alerts = AlertDispatcher([HubBuzzOutput(source)], {"high": [200, 100, 200]})
    alerts.alert("high")
    await alerts.wait()
    assert heard == [[200, 100, 200]]
    assert alerts.outputs[0].describe()["sent"] == 1
    await source.close()


async def test_hub_output_counts_a_link_without_motor(caplog):
    class NoMotor:
        url = "serial:///dev/null"

        async def send_buzz(self, pattern):
            return False

    out = HubBuzzOutput(NoMotor())
    with caplog.at_level(logging.WARNING, logger="liftguard.alert"):
        AlertDispatcher([out]).alert("high")
        await out.wait()
    assert out.refused == 1
    assert "did not accept the buzz command" in caplog.text


async def test_log_output_logs_the_pattern(caplog):
    with caplog.at_level(logging.WARNING, logger="liftguard.alert"):
        AlertDispatcher([LogOutput()]).alert("high")
    assert "ALERT pattern [400, 150, 400, 150, 400]" in caplog.text


def test_mock_option_builds_a_mock_pin():
    out = parse_output_spec("gpio:22?mock=1")
    assert isinstance(out, GpioOutput) and out.pin == 22
    out.close()


@pytest.mark.parametrize("spec, words", [
    ("gpio:xx", "pin 'xx' is not a BCM pin number"),
    ("gpio:99", "pin '99' is not a BCM pin number"),
    ("gpio:17?volume=3", "unknown option(s) volume"),
    ("gpio:17?pwm=yes", "pwm='yes'; expected 0 or 1"),
    ("gpio:17?duty=2", "expected 0 < duty <= 1"),
    ("siren", "expected gpio:PIN, hub or log"),
])
def test_bad_output_specs_are_refused(spec, words):
    with pytest.raises(ConfigError) as err:
        parse_output_spec(spec, pin_factory=MockFactory())
    assert words in str(err.value)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize("patterns, words", [
    ({"extreme": [100]}, "unknown risk level 'extreme'"),
    ({"high": [0]}, "high[0] = 0; expected a duration of 1 to 10000 ms"),
    ({"high": "buzz"}, "expected a list of on/off durations"),
    ({"medium": [400, 150, 400, 150, 400]}, "levels 'medium' and 'high' share the pattern"),
    ({"high": [10000, 10000, 10000]}, "lasts 30000 ms"),
])
def test_bad_patterns_are_refused(patterns, words):
    with pytest.raises(ConfigError) as err:
        validate_patterns(patterns)
    assert words in str(err.value)
