"""Load the HIL plugin for tests under ``hil_tests/``.

pytest only honours ``pytest_plugins`` in the root conftest, so the plugin's
hooks and fixtures are imported here by name instead; the same plugin can be
loaded elsewhere with ``-p hil_tests.plugin``.
"""

from hil_tests.plugin import (  # noqa: F401  (hooks and fixtures are found by name)
    hil_options,
    hil_report,
    hil_workdir,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_sessionstart,
)
from hil_tests.fixtures import hil_bundle, hil_clean_run, hil_shift  # noqa: F401
