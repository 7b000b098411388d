"""``host scan``: emulated worlds, the suggested mapping, and no-BlueZ errors."""

from __future__ import annotations

import json

import pytest

from edge.layout import SENSORS
from host.__main__ import main
from host.scan import classify, mapping_toml, suggest_mapping

pytestmark = pytest.mark.timeout(60)


def test_scan_emulated_six_writes_a_mapping_the_hub_config_takes(tmp_path, capsys):
    out = tmp_path / "mapping.toml"
    rc = main(["scan", "--emulated", "6", "--timeout", "0.6", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(captured.out)
    assert data["emulated"] is True
    assert [d["name"] for d in data["devices"]] == [f"LG-IMU-{s}" for s in SENSORS]
    assert all(d["kind"] == "liftguard" and isinstance(d["rssi"], int) for d in data["devices"])
    assert all(d["how"] == "advertised name" for d in data["devices"])
    assert set(data["mapping"]) == set(SENSORS) and data["missing"] == []
    url = data["sources"]["liftguard"]
    for site, address in data["mapping"].items():
        assert f"{site}={address}" in url

    from edge.hub_config import load_config
    from edge.sources.ble import BleImuSource

    cfg = load_config(out)
    assert cfg.source == url
    assert BleImuSource(cfg.source).addresses == {s: a for s, a in data["mapping"].items()}


def test_scan_text_mixed_kinds_suggests_free_sites(capsys, tmp_path):
    rc = main(["scan", "--emulated", "3", "--emulated-witmotion", "2", "--timeout", "0.6",
               "--connect", "--out", str(tmp_path / "m.toml")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["ADDRESS", "NAME", "KIND", "RSSI", "SITE"]
    rows = [line for line in lines[1:] if line.startswith("C0:")]
    assert len(rows) == 5
    assert sum("witmotion" in r and "(suggested)" in r for r in rows) == 2
    assert sum("liftguard" in r and "(advertised name)" in r for r in rows) == 3
    assert any(line.startswith("source: witmotion-ble://?Back=") for line in lines)
    text = (tmp_path / "m.toml").read_text()
    assert "The hub takes one source; the witmotion IMUs would be: witmotion-ble://" in text
    assert "suggested" in text and 'source = "ble://?Side=' in text
    assert "# Not found: Thig" in text


def test_scan_without_bluez_says_so_without_a_traceback(capsys):
    rc = main(["scan", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "host: error: no Bluetooth adapter usable here" in err and "BlueZ" in err
    assert "--emulated" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--emulated", "7"], "--emulated 7; expected 0 to 6"),
    (["--timeout", "0"], "--timeout 0; expected seconds > 0"),
])
def test_bad_flags(capsys, argv, message):
    assert main(["scan", *argv]) == 1
    assert message in capsys.readouterr().err


def test_suggestions_prefer_named_sites_then_strongest_signal():
    devices = [
        {"address": "AA:00:00:00:00:01", "name": "WT901BLE1", "kind": "witmotion", "rssi": -80, "site": None},
        {"address": "AA:00:00:00:00:02", "name": "LG-IMU-Side", "kind": "liftguard", "rssi": -90,
         "site": "Side", "how": "advertised name"},
        {"address": "AA:00:00:00:00:03", "name": "WT901BLE2", "kind": "witmotion", "rssi": -40, "site": None},
    ]
    mapping = suggest_mapping(devices)
    assert {s: d["address"][-2:] for s, d in mapping.items()} == {"Side": "02", "LtWt": "03", "RtWt": "01"}
    assert mapping["LtWt"]["how"] == "suggested"
    text = mapping_toml(mapping)
    assert 'source = "witmotion-ble://?LtWt=AA:00:00:00:00:03&RtWt=AA:00:00:00:00:01&rate=25"' in text
    assert "# Not found: Back, UArm, Thig" in text


def test_classify():
    from edge.sources import ble_profile, witmotion

    assert classify("LG-IMU-Back", []) == "liftguard"
    assert classify(None, [ble_profile.SERVICE_UUID]) == "liftguard"
    assert classify("WT901BLE68", []) == "witmotion"
    assert classify(None, [witmotion.SERVICE_UUID]) == "witmotion"
    assert classify("Headphones", []) is None


def test_scan_connect_reads_the_site_of_unassigned_imus(capsys):
    rc = main(["scan", "--emulated", "6", "--emulated-unassigned", "2", "--timeout", "0.6",
               "--connect", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    how = {d["name"]: (d["assigned"], d["how"]) for d in data["devices"]}
    assert how["LG-IMU-0005"] == ("UArm", "site characteristic")
    assert how["LG-IMU-0006"] == ("Thig", "site characteristic")
    assert how["LG-IMU-Side"] == ("Side", "advertised name")
    rc = main(["scan", "--emulated", "6", "--emulated-unassigned", "2", "--timeout", "0.6", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert {d["how"] for d in data["devices"] if d["name"].endswith(("0005", "0006"))} == {"suggested"}
