"""Options and fixtures of the legacy-runtime tests (``make test-legacy``).

``make test-legacy`` builds ``.venv-legacy`` (tflite-runtime 2.14, numpy<2,
``pip install -e '.[legacy]'``) and runs this folder with
``--legacy-python .venv-legacy/bin/python``. The bundle is built with the main
environment's TensorFlow in this process; the self-test runs in a subprocess
of the legacy interpreter, exactly as an old hub would run it.

Without ``--legacy-python`` (or ``$LIFTGUARD_LEGACY_PYTHON``) the tests are
skipped with a message saying how to run them, since the legacy environment
is only built by ``make test-legacy``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# test_bundle_kit lives one folder up
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_addoption(parser):
    """Add ``--legacy-python``."""
    parser.addoption("--legacy-python", default=None, metavar="PYTHON",
                     help="python of the legacy environment (tflite-runtime 2.14, numpy<2) for tests/legacy_runtime")


@pytest.fixture(scope="session")
def legacy_python(pytestconfig) -> Path:
    """The legacy environment's python, or skip when none was given."""
    try:
        given = pytestconfig.getoption("--legacy-python")
    except ValueError:  # option not registered (this conftest was not an initial one)
        given = None
    given = given or os.environ.get("LIFTGUARD_LEGACY_PYTHON")
    if not given:
        pytest.skip("legacy runtime environment not given; run `make test-legacy` "
                    "(or pass --legacy-python .venv-legacy/bin/python)")
    path = Path(given)
    if not path.exists():
        pytest.fail(f"--legacy-python {path}: no such interpreter; `make test-legacy` creates it")
    return path
