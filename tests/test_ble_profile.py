"""The LiftGuard BLE IMU profile: the test vectors of docs/ble.md, written out
byte by byte, and the decoder's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ProtocolError
from edge.sources import ble_profile as bp

#: Vector 1: one record, seq 0x0102, t_us 0x11223344,
#: raw (2048, -2048, 0, 16384, -1, 32767).
ONE = bytes([0x11, 0x02, 0x01, 0x44, 0x33, 0x22, 0x11,
             0x00, 0x08, 0x00, 0xF8, 0x00, 0x00, 0x00, 0x40, 0xFF, 0xFF, 0xFF, 0x7F])
#: Vector 2: two records, seq 65535 then 0 (wrap), t_us 4294967295 then 39999 (wrap).
TWO = bytes([0x12,
             0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + [0x00] * 12
            + [0x00, 0x00, 0x3F, 0x9C, 0x00, 0x00] + [0x01, 0x00] * 6)


def test_vector_one_record():
    (rec,) = bp.decode_samples(ONE)
    assert rec == bp.ImuRecord(0x0102, 0x11223344, (2048, -2048, 0, 16384, -1, 32767))
    np.testing.assert_allclose(rec.values(), [1.0, -1.0, 0.0, 1000.0, -2000 / 32768,
                                              32767 * 2000 / 32768], rtol=1e-6)
    assert bp.encode_samples([rec]) == ONE
    assert len(ONE) <= 23 - 3  # fits the default ATT MTU


def test_vector_two_records_and_wraps():
    recs = bp.decode_samples(TWO)
    assert [r.seq for r in recs] == [65535, 0]
    assert [r.t_us for r in recs] == [0xFFFFFFFF, 39999]
    assert recs[1].raw == (1,) * 6
    assert bp.encode_samples(recs) == TWO
    u = bp.SequenceUnwrapper()
    assert u.update(recs[0]) == (True, pytest.approx(0xFFFFFFFF / 1e6))
    fresh, t = u.update(recs[1])
    assert fresh and t == pytest.approx((2**32 + 39999) / 1e6)  # 40 ms later, not 71 min earlier
    assert u.missed == 0


def test_config_and_info_vectors():
    assert bp.encode_config(bp.ImuConfig(25, 1, True)) == bytes([0x19, 0x00, 0x01, 0x01])
    assert bp.decode_config(bytes([0x32, 0x00, 0x04, 0x00])) == bp.ImuConfig(50, 4, False)
    assert bp.encode_info((1, 2, 3)) == bytes([0x01, 0x02, 0x03, 0x10, 0x00, 0xD0, 0x07])
    assert bp.decode_info(bp.encode_info((1, 2, 3))) == {
        "firmware": "1.2.3", "accel_full_scale_g": 16, "gyro_full_scale_dps": 2000}


def test_names_and_sites():
    assert bp.advertised_name("Back") == "LG-IMU-Back"
    assert bp.site_from_name("LG-IMU-Back") == "Back"
    assert bp.site_from_name("LG-IMU-thig") == "Thig"
    assert bp.site_from_name("LG-IMU-00A3") is None
    assert bp.site_from_name("WT901BLE68") is None
    assert bp.decode_site(b"UArm\x00") == "UArm"
    assert bp.decode_site(b"\xff\xfe") is None


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (bytes([0x21]) + ONE[1:], "format version 2; expected 1"),
    (bytes([0x10]), "announces 0 records"),
    (ONE[:-1], "18 bytes for 1 records; expected 19"),
    (ONE + b"\x00", "20 bytes for 1 records; expected 19"),
])
def test_decoder_refuses_bad_payloads(payload, message):
    with pytest.raises(ProtocolError, match=message):
        bp.decode_samples(payload)


@pytest.mark.parametrize("config, message", [
    (bp.ImuConfig(0, 1, True), "rate 0 Hz"),
    (bp.ImuConfig(25, 14, True), "batch 14; expected 1 to 13"),
])
def test_config_ranges(config, message):
    with pytest.raises(ProtocolError, match=message):
        bp.encode_config(config)
    with pytest.raises(ProtocolError):
        bp.decode_config(b"\x19\x00")


def test_sequence_gaps_and_repeats_are_counted():
    u = bp.SequenceUnwrapper()
    for seq in (10, 11, 14, 14, 12, 15):
        u.update(bp.ImuRecord(seq, seq * 40000, (0,) * 6))
    assert u.missed == 2 and u.repeated == 2 and u.last_seq == 15


def test_physical_to_raw_saturates():
    assert bp.physical_to_raw([20.0, -20.0, 1.0, 3000.0, -3000.0, 0.0]) == (
        32767, -32768, 2048, 32767, -32768, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 2**32 - 1),
                          st.lists(st.integers(-32768, 32767), min_size=6, max_size=6)),
                min_size=1, max_size=bp.MAX_BATCH))
def test_round_trip(records):
    recs = [bp.ImuRecord(s, t, tuple(raw)) for s, t, raw in records]
    payload = bp.encode_samples(recs)
    assert len(payload) == 1 + 18 * len(recs) <= 247 - 3
    assert bp.decode_samples(payload) == recs


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_raises_only_protocol_errors(data):
    try:
        bp.decode_samples(data)
    except ProtocolError:
        pass


def test_hub_sources_do_not_import_bumble():
    import subprocess
    import sys

    code = ("import sys, edge.sources.ble, edge.sources.witmotion, edge.sources.ble_profile; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bumble', 'host')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
