"""The golden-vector self-test of an exported bundle passes on tflite-runtime 2.14 with numpy<2."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from test_bundle_kit import tiny_bundle


def legacy(python, *args, timeout=120):
    """Run the legacy python; return the completed process."""
    return subprocess.run([str(python), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tb():
    return tiny_bundle()


def test_legacy_environment_is_what_old_hubs_have(legacy_python):
    code = ("import importlib.util as u, numpy, tflite_runtime, sys; "
            "print(numpy.__version__, tflite_runtime.__version__, "
            "u.find_spec('ai_edge_litert') is None, u.find_spec('tensorflow') is None)")
    out = legacy(legacy_python, "-c", code)
    assert out.returncode == 0, out.stderr
    numpy_version, tflite_version, no_litert, no_tf = out.stdout.split()
    assert numpy_version.startswith("1.") and tflite_version == "2.14.0"
    assert no_litert == "True" and no_tf == "True"


def test_golden_self_test_on_tflite_runtime_2_14(legacy_python, tb):
    t0 = time.perf_counter()
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", tb.bundle, "--trust", tb.pub, "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["runtime"] == "tflite_runtime" and s["runtime_version"] == "2.14.0"
    assert s["numpy"].startswith("1.")
    assert s["selftest"] == "passed"
    assert len(s["golden"]) >= 3 and all(g["max_steps"] <= 1 for g in s["golden"])
    print(f"legacy self-test subprocess took {time.perf_counter() - t0:.2f} s")


def test_legacy_hub_refuses_a_bad_bundle_in_one_line(legacy_python, tb, tmp_path):
    data = tb.bundle.read_bytes()
    bad = tmp_path / "cut.lgb"
    bad.write_bytes(data[: len(data) // 2])
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", bad, "--trust", tb.pub)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("edge: error: ") and "truncated or corrupt" in out.stderr
    assert "Traceback" not in out.stderr
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", tb.bundle, "--trust", tb.other_pub)
    assert out.returncode == 1 and "unknown key" in out.stderr
