"""pytest plugin of the LiftGuard HIL rig: options, the QA report, and the rig fixtures.

Options (all optional; without them everything runs on emulated parts):

``--hub-port URL``
    Management serial port of a hub on another board (``host status/logs/flash
    --port``); needs ``--rig-port``. The hub under test is then reached only
    through it (:class:`hil_tests.rig.RemoteHub`). Without it the fixture
    starts the real ``edge run`` process here.
``--hub-reprovision``
    With ``--hub-port``: a bench hub that trusts another key is re-provisioned
    (``host provision --replace``) with the bundle's key instead of refused.
``--rig-port PORT``
    Serial port the sensor rig plays into (a USB-serial cable wired to the
    hub's sensor input). Without it ``host emulate`` makes a pseudo-terminal.
``--bundle FILE``
    The signed ``.lgb`` bundle under test (with ``--trust KEY.pub``). Without it
    a small model is trained, converted and exported once per session.
``--data DIR``
    The data set whose test split is replayed. Without it ``quantize synth``
    simulates a small cohort once per session.
``--hil-report DIR``
    Write ``DIR/junit.xml`` (pytest's junitxml), ``DIR/report.md`` (pass/fail
    table, figures, latency table), ``DIR/latency.png`` and ``DIR/figures.json``.

Tests state their expectation in the first line of their docstring; it is
copied into the report's pass/fail table. Figures go in through the
``hil_report`` fixture.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import pytest

from .report import Figure, HilReport

_REPORT_KEY = pytest.StashKey[HilReport]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the HIL options."""
    group = parser.getgroup("hil", "LiftGuard hardware-in-the-loop rig")
    group.addoption("--hub-port", default=None, metavar="URL",
                    help="management port of a hub on another board, wired to --rig-port (default: start "
                         "`edge run` here)")
    group.addoption("--hub-reprovision", action="store_true",
                    help="with --hub-port: replace the bench hub's trusted key with the bundle's (host provision "
                         "--replace) instead of refusing")
    group.addoption("--rig-port", default=None, metavar="PORT",
                    help="serial port the sensor rig plays into (default: a new pseudo-terminal)")
    group.addoption("--bundle", default=None, metavar="FILE",
                    help="signed .lgb bundle under test (default: train and export a small one)")
    group.addoption("--trust", default=None, metavar="KEY.pub",
                    help="public key that signed --bundle")
    group.addoption("--split", default=None, metavar="JSON",
                    help="a run's split.json: replay only its test trials of --data")
    group.addoption("--bundle-next", default=None, metavar="FILE",
                    help="a newer bundle for the flash-during-shift scenario (default: re-export the built run)")
    group.addoption("--data", default=None, metavar="DIR",
                    help="data set whose test split is replayed (default: simulate a small cohort)")
    group.addoption("--hil-report", default=None, metavar="DIR",
                    help="write junit.xml, report.md, latency.png and figures.json into DIR")
    group.addoption("--hil-speed", default=60.0, type=float, metavar="X",
                    help="replay speed, multiple of real time (default 60)")
    group.addoption("--hil-seed", default=7, type=int, metavar="N",
                    help="seed of every simulated cohort, shift and fault (default 7, as quantize demo)")
    group.addoption("--hil-work", default=None, metavar="DIR",
                    help="keep the rig's work files (data, bundle, logs) here instead of a temp dir")
    group.addoption("--hil-reuse", action="store_true",
                    help="with --hil-work: reuse the bundle an earlier session built there (development only)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Point junitxml into the report folder and register the report collector."""
    config.addinivalue_line("markers", "slow: long runs kept out of make test")
    config.addinivalue_line("markers", "hil: a scenario that drives the hub under test")
    hub_port = config.getoption("--hub-port", default=None)
    if hub_port and not config.getoption("--rig-port", default=None):
        raise pytest.UsageError(f"--hub-port {hub_port} needs --rig-port PORT: the serial port wired to that hub's "
                                f"sensor input, into which the rig plays (docs/qa.md, Bench)")
    out = config.getoption("--hil-report", default=None)
    out_dir = Path(out).resolve() if out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not getattr(config.option, "xmlpath", None):
            config.option.xmlpath = str(out_dir / "junit.xml")
    config.stash[_REPORT_KEY] = HilReport(out_dir)


def _report(config: pytest.Config) -> Optional[HilReport]:
    return config.stash.get(_REPORT_KEY, None)


def _expectation(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    doc = inspect.getdoc(fn) if fn is not None else ""
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fold setup/call/teardown reports into one outcome per test (durations summed)."""
    rep = _SESSION_REPORT.get("report")
    if rep is None:
        return
    # every phase counts: setup time (session fixtures build the bundle) is part of a test's time
    if report.failed:
        outcome = "failed" if report.when == "call" else "error"
        message = _short(report)
    elif report.skipped:
        outcome = "skipped"
        message = _short(report)
    else:
        outcome, message = "passed", ""
    rep.add_outcome(report.nodeid, outcome, report.duration, _EXPECTATIONS.get(report.nodeid, ""), message)


_SESSION_REPORT: dict = {}
_EXPECTATIONS: dict = {}


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    """Remember each test's stated expectation (its docstring's first paragraph)."""
    for item in items:
        _EXPECTATIONS[item.nodeid] = _expectation(item)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Make the report reachable from the logreport hook."""
    _SESSION_REPORT["report"] = _report(session.config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the QA report when ``--hil-report`` was given."""
    rep = _report(session.config)
    if rep is None or rep.out_dir is None:
        return
    path = rep.write()
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and path is not None:
        tr.write_line(f"HIL report: {path}")


def _short(report: pytest.TestReport) -> str:
    text = getattr(report, "longreprtext", "") or ""
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")] or text.splitlines()[-1:]
    return " ".join(ln[1:].strip() if ln.startswith("E ") else ln.strip() for ln in lines[:4])


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
class FigureRecorder:
    """What a test uses to put figures and latencies into the QA report.

    Args:
        report: The session's report (figures are dropped when None).
        nodeid: The test's node id.
    """

    def __init__(self, report: Optional[HilReport], nodeid: str) -> None:
        self._report = report
        self.nodeid = nodeid
        self.figures: list = []

    def figure(self, name: str, value: float, unit: str = "", expectation: str = "",
               met: Optional[bool] = None) -> None:
        """Record one figure with the expectation it is held to."""
        f = Figure(self.nodeid, name, float(value), unit, expectation, met)
        self.figures.append(f)
        if self._report is not None:
            self._report.add_figure(f)

    def latencies(self, label: str, values_s) -> None:
        """Record lift-end-to-buzz times (stream seconds)."""
        if self._report is not None:
            self._report.add_latencies(label, list(values_s))

    def note(self, text: str) -> None:
        """Add a line to the report header."""
        if self._report is not None and text not in self._report.notes:
            self._report.add_note(text)


@pytest.fixture
def hil_report(request: pytest.FixtureRequest) -> FigureRecorder:
    """Put figures and latencies into the QA report (a no-op without ``--hil-report``)."""
    return FigureRecorder(_report(request.config), request.node.nodeid)


@pytest.fixture(scope="session")
def hil_options(request: pytest.FixtureRequest) -> dict:
    """The HIL options as a dict (paths resolved)."""
    opt = request.config.getoption

    def path(name):
        v = opt(name)
        return Path(v).resolve() if v else None

    return {
        "hub_port": opt("--hub-port"),
        "reprovision": bool(opt("--hub-reprovision")),
        "rig_port": opt("--rig-port"),
        "bundle": path("--bundle"),
        "trust": path("--trust"),
        "data": path("--data"),
        "split": path("--split"),
        "bundle_next": path("--bundle-next"),
        "speed": float(opt("--hil-speed")),
        "seed": int(opt("--hil-seed")),
        "work": path("--hil-work"),
        "reuse": bool(opt("--hil-reuse")),
    }


@pytest.fixture(scope="session")
def hil_workdir(hil_options, tmp_path_factory) -> Path:
    """Folder for the session's data, bundles and logs."""
    if hil_options["work"] is not None:
        hil_options["work"].mkdir(parents=True, exist_ok=True)
        return hil_options["work"]
    return tmp_path_factory.mktemp("hil")

