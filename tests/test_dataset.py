"""The data set format: round trips, the authors' layout, and every bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.dataset import (
    DatasetWriter,
    check_dataset,
    load_dataset,
    read_trial_csv,
    validate_trial_csv,
    write_trial_csv,
)
from edge.errors import BadCSV, DataError
from edge.layout import CHANNELS, CSV_COLUMNS
from quantize.__main__ import main as quantize_main


def _messages(problems):
    return "\n".join(str(p) for p in problems)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(123, 36)), 6)
    t = np.round(1.7e9 + np.arange(123) / 25.0, 4)
    write_trial_csv(tmp_path / "a.csv", x, t)
    trial = read_trial_csv(tmp_path / "a.csv")
    assert np.allclose(trial.samples, x, atol=1e-6) and np.allclose(trial.timestamps, t, atol=1e-4)
    # Second read comes from the cache and is identical.
    again = read_trial_csv(tmp_path / "a.csv")
    assert np.array_equal(again.samples, trial.samples)


def test_writer_and_loader(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    assert ds.layout == "liftguard" and len(ds) == 6
    assert [m.risk for m in ds.trials] == ["high", "high", "high", "low", "low", "medium"]
    assert ds.read(ds.trials[2]).samples.shape == (320, 36)
    assert check_dataset(tiny_dataset) == []


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _good_rows(n=10):
    rows = []
    for i in range(n):
        rows.append(",".join(["0.5"] * 36 + [f"{1.7e9 + i / 25:.4f}"]))
    return rows


@pytest.mark.parametrize(
    "case, expected",
    [
        ("empty", "is empty"),
        ("header_only", "no data rows"),
        ("missing_column", "missing column(s) 'Back_G_z'"),
        ("extra_column", "unexpected column(s) 'Temp'"),
        ("misordered", "column 1 is 'Side_A_y'; expected 'Side_A_x'"),
        ("non_numeric", "row 4, column 'LtWt_A_y': 'abc' is not a number"),
        ("nan", "row 3, column 'Side_A_x'"),
        ("inf", "is not a finite number"),
        ("backwards", "does not increase"),
        ("wrong_rate", "expected 40 ms (25 Hz)"),
    ],
)
def test_bad_trial_csv_messages(tmp_path, case, expected):
    header = list(CSV_COLUMNS)
    rows = _good_rows()
    if case == "empty":
        text = ""
    elif case == "header_only":
        text = ",".join(header) + "\n"
    elif case == "missing_column":
        h = [c for c in header if c != "Back_G_z"]
        text = "\n".join([",".join(h)] + [",".join(r.split(",")[:35] + [r.split(",")[-1]]) for r in rows]) + "\n"
    elif case == "extra_column":
        text = "\n".join([",".join(header + ["Temp"])] + [r + ",1" for r in rows]) + "\n"
    elif case == "misordered":
        h = header[:]
        h[0], h[1] = h[1], h[0]
        text = "\n".join([",".join(h)] + rows) + "\n"
    elif case == "non_numeric":
        cells = rows[2].split(",")
        cells[CHANNELS.index("LtWt_A_y")] = "abc"
        rows[2] = ",".join(cells)
        text = "\n".join([",".join(header)] + rows) + "\n"
    elif case in ("nan", "inf"):
        cells = rows[1].split(",")
        cells[0] = "nan" if case == "nan" else "inf"
        rows[1] = ",".join(cells)
        text = "\n".join([",".join(header)] + rows) + "\n"
    elif case == "backwards":
        rows[5], rows[6] = rows[6], rows[5]
        text = "\n".join([",".join(header)] + rows) + "\n"
    elif case == "wrong_rate":
        rows = [",".join(["0.5"] * 36 + [f"{1.7e9 + i / 100:.4f}"]) for i in range(10)]
        text = "\n".join([",".join(header)] + rows) + "\n"
    path = _write_text(tmp_path / f"{case}.csv", text)
    trial, problems = validate_trial_csv(path)
    assert trial is None
    msg = _messages(problems)
    assert f"{case}.csv" in msg and expected in msg, msg
    with pytest.raises(BadCSV, match=f"{case}.csv"):
        read_trial_csv(path)


def test_index_problems_are_named(tiny_dataset):
    index = tiny_dataset / "index.csv"
    lines = index.read_text().splitlines()
    lines[1] = lines[1].replace("trials/T0.csv", "trials/missing.csv")
    cells = lines[2].split(",")
    cells[2] = "13"  # unknown zone
    lines[2] = ",".join(cells)
    index.write_text("\n".join(lines) + "\n")
    msg = _messages(check_dataset(tiny_dataset))
    assert "index.csv, row 2, column 'file': 'trials/missing.csv' does not exist" in msg
    assert "index.csv, row 3, column 'zone': unknown zone 13; expected 1 to 12" in msg
    assert "trials/T0.csv: CSV not listed in index.csv" in msg
    with pytest.raises(DataError, match="2 error"):
        load_dataset(tiny_dataset)
    ds = load_dataset(tiny_dataset, skip_bad=True)
    assert len(ds) == 4 and len(ds.skipped) == 2


def test_check_cli_exit_codes(tiny_dataset, capsys):
    assert quantize_main(["check", "--data", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "6 usable trial(s)" in out and "per risk:    low: 2, medium: 1, high: 3" in out
    (tiny_dataset / "trials" / "T3.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    assert quantize_main(["check", "--data", str(tiny_dataset)]) == 1
    err = capsys.readouterr().err
    assert "T3.csv: has a header but no data rows" in err


def test_check_cli_on_missing_folder(tmp_path, capsys):
    assert quantize_main(["check", "--data", str(tmp_path / "nope")]) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_authors_layout_is_detected(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "authors"
    (root / "metadata").mkdir(parents=True)
    t0 = 1_600_000_000.0  # 12:26:40 UTC -> 44800 s of the day
    for zone in (2, 5, 8):
        x = rng.normal(size=(300, 36))
        write_trial_csv(root / f"Subject_02_P2_Zone{zone}_T1.csv", x, t0 + np.arange(300) / 25)
    (root / "metadata" / "lift_times_untrimmed.csv").write_text(
        "filename,start_stamp,frames_after,extra\n"
        "Subject_02_P2_Zone2_T1.csv,44802.0,100,x\n"
        "Subject_02_P2_Zone5_T1.csv,44801.0,120,x\n")
    ds = load_dataset(root)
    assert ds.layout == "authors" and len(ds) == 3
    by = {m.zone: m for m in ds.trials}
    assert by[2].lift_start == 50 and by[2].lift_end == 150 and by[2].risk == "high"
    assert by[5].lift_start == 25 and by[5].subject == "S02"
    assert by[8].lift_start == 0 and by[8].lift_end == 299  # no metadata row: whole trial
    assert any("no row in metadata" in p.message for p in ds.problems)


def test_edge_imports_and_tensorizes_without_tensorflow(tiny_dataset, tmp_path):
    """The hub package must work where TensorFlow (and scipy) cannot be imported."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'scipy', 'keras', 'quantize'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import numpy as np, edge
from edge.dataset import load_dataset
from edge.signal_path import TensorRecipe, cut_lift, tensorize
ds = load_dataset({str(tiny_dataset)!r})
m = ds.trials[0]
w = cut_lift(ds.read(m).samples, m.lift_start, m.lift_end)
sos = [[0.6389, -1.2779, 0.6389, 1.0, -1.3027, 0.4930], [1.0, 2.0, 1.0, 1.0, 1.8224, 0.8374]]
img = tensorize(w, TensorRecipe(sos=sos, mean=np.zeros(36), std=np.ones(36)))
assert img.shape == (95, 95, 3)
assert 'tensorflow' not in sys.modules and 'scipy' not in sys.modules
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"LIFTGUARD_CACHE": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
