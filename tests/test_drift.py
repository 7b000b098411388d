"""Training and the hub never drift: both paths give identical tensors."""

import numpy as np

from edge.__main__ import main as edge_main
from quantize.data import fit_recipe, load_windows, make_tensors


def test_training_and_hub_tensors_are_identical(tiny_dataset, tmp_path):
    lw = load_windows(tiny_dataset, progress=False)
    recipe = fit_recipe(lw.windows[:4])
    recipe.save(tmp_path / "recipe.json")
    train_x = make_tensors(lw.windows, recipe, progress=False)
    assert edge_main(["tensorize", "--data", str(tiny_dataset), "--recipe", str(tmp_path / "recipe.json"),
                      "--out", str(tmp_path / "hub.npz")]) == 0
    hub = np.load(tmp_path / "hub.npz")
    assert list(hub["trial_ids"]) == lw.trial_ids
    assert np.array_equal(hub["x"], train_x)


def test_cli_help_works():
    for mod in ("edge", "host", "quantize"):
        import subprocess
        import sys
        out = subprocess.run([sys.executable, "-m", mod, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "usage:" in out.stdout
