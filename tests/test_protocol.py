"""Tests of the sensor-hub serial protocol: test vectors, framing, every counted problem.

The test vectors here are the ones printed in ``docs/protocol.md``. A few are
also rebuilt byte by byte with :mod:`struct`, a bitwise CRC and a reference
COBS encoder written from the specification, independent of
:mod:`edge.protocol`, so the document, the code and the wire agree.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from edge.errors import BadFrame, ProtocolError
from edge.layout import SENSORS
from edge.protocol import (COUNTER_NAMES, MAX_FLASH_CHUNK, MAX_PAYLOAD, PROTOCOL_VERSION, RAW_INVALID, Ack,
                           Buzz, Capabilities, Fault, FaultCode, Feature, FlashAbort, FlashAck, FlashBegin,
                           FlashChunk, FlashEnd, FlashResult, FrameDecoder, Hello, ManagementRequest,
                           ManagementResponse, Nak, NakReason, SampleFrame, SensorState, Status, crc16, crc32,
                           decode_frame, encode_body, encode_message, raw_to_units, units_to_raw)


# ---------------------------------------------------------------- references written from the spec

def crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE the slow way: poly 0x1021, init 0xFFFF, MSB first, no xorout."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def cobs_encode_reference(data: bytes) -> bytes:
    """COBS (Cheshire & Baker) straight from the description: blocks of at most 254 non-zero bytes."""
    out = bytearray()
    block = bytearray()
    full_block_last = False
    for byte in data:
        full_block_last = False
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
                full_block_last = True
    if not full_block_last:  # a final full block needs no empty block after it
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def frame_from_body(version: int, type_byte: int, payload: bytes) -> bytes:
    head = bytes((version, type_byte)) + payload
    return cobs_encode_reference(head + struct.pack("<H", crc16_bitwise(head))) + b"\x00"


# ---------------------------------------------------------------- the documented vectors

def _sample_raw(lost_uarm: bool) -> np.ndarray:
    raw = np.zeros((6, 6), np.int16)
    raw[:, 2] = 2048  # +1 g on z
    raw[3] = [0, -2048, 2048, 164, -164, 0]  # Back: -1 g y, +1 g z, +10.01 dps x, -10.01 dps y
    if lost_uarm:
        raw[4] = RAW_INVALID
    return raw


VECTOR_MESSAGES = {
    "hello": Hello(host_id="hub"),
    "capabilities": Capabilities(device_id="SH-0001", firmware_version="1.0.0", sample_rate_hz=25.0,
                                 accel_full_scale_g=16, gyro_full_scale_dps=2000,
                                 features=int(Feature.BUZZ | Feature.BATTERY), max_payload=256),
    "sample_all_valid": SampleFrame(seq=1, t_us=40000, valid_mask=0x3F, raw=_sample_raw(False)),
    "sample_uarm_lost": SampleFrame(seq=2, t_us=80000, valid_mask=0x2F, raw=_sample_raw(True)),
    "status": Status(uptime_s=3600, battery_pct=87, battery_mv=3950, sensor_states=(0, 0, 0, 0, 1, 0),
                     faults=(FaultCode.IMU_NOT_FOUND,)),
    "fault": Fault(sensor=4, code=FaultCode.IMU_NOT_FOUND, t_us=80000, detail="no ack"),
    "buzz": Buzz(buzz_id=1, pattern_ms=(300, 200, 300)),
    "ack_buzz": Ack(of_type=0x20, ref=1),
    "nak_busy": Nak(of_type=0x50, ref=7, reason=NakReason.BUSY, detail="busy"),
    "mgmt_status": ManagementRequest(request_id=1, op="status", body={}),
    "mgmt_reply": ManagementResponse(request_id=1, ok=True, body={"hub_id": "A1"}),
    "flash_begin": FlashBegin(transfer_id=7, total_size=4, sha256=bytes(range(32)), name="m.lgb"),
    "flash_chunk": FlashChunk(transfer_id=7, offset=0, data=b"LGB1"),
    "flash_ack": FlashAck(transfer_id=7, next_offset=4),
    "flash_end": FlashEnd(transfer_id=7),
    "flash_result": FlashResult(transfer_id=7, ok=True, message="installed", active_version="1.0"),
}

VECTOR_WIRE = {
    "hello": (
        "09 01 01 03 68 75 62 bf f3 00 "
    ),
    "capabilities": (
        "13 01 02 07 53 48 2d 30 30 30 31 05 31 2e 30 2e 30 a8 61 01 02 10 04 d0 07 03 01 23 01 06 04 53 "
        "69 64 65 04 4c 74 57 74 04 52 74 57 74 04 42 61 63 6b 04 55 41 72 6d 04 54 68 69 67 60 30 00 "
    ),
    "sample_all_valid": (
        "04 01 10 01 01 01 03 40 9c 01 01 01 01 01 02 3f 01 01 01 01 02 08 01 01 01 01 01 01 01 01 01 01 "
        "02 08 01 01 01 01 01 01 01 01 01 01 02 08 01 01 01 01 01 01 01 01 02 f8 03 08 a4 03 5c ff 01 01 "
        "01 01 01 01 02 08 01 01 01 01 01 01 01 01 01 01 02 08 01 01 01 01 01 03 ec 58 00 "
    ),
    "sample_uarm_lost": (
        "04 01 10 02 01 01 04 80 38 01 01 01 01 01 02 2f 01 01 01 01 02 08 01 01 01 01 01 01 01 01 01 01 "
        "02 08 01 01 01 01 01 01 01 01 01 01 02 08 01 01 01 01 01 01 01 01 02 f8 03 08 a4 03 5c ff 01 01 "
        "02 80 02 80 02 80 02 80 02 80 02 80 01 01 01 01 02 08 01 01 01 01 01 03 84 63 00 "
    ),
    "status": (
        "05 01 11 10 0e 01 05 57 6e 0f 06 01 01 01 02 01 03 01 02 03 1a 86 00 "
    ),
    "fault": (
        "05 01 12 04 02 04 80 38 01 01 01 01 01 0a 06 6e 6f 20 61 63 6b 12 35 00 "
    ),
    "buzz": (
        "04 01 20 01 05 03 2c 01 c8 05 2c 01 9d f7 00 "
    ),
    "ack_buzz": (
        "05 01 30 20 01 01 01 03 23 18 00 "
    ),
    "nak_busy": (
        "05 01 31 50 07 01 01 09 06 04 62 75 73 79 e9 0b 00 "
    ),
    "mgmt_status": (
        "04 01 40 01 0c 06 73 74 61 74 75 73 7b 7d f9 85 00 "
    ),
    "mgmt_reply": (
        "04 01 41 01 02 01 01 13 01 7b 22 68 75 62 5f 69 64 22 3a 22 41 31 22 7d b9 90 00 "
    ),
    "flash_begin": (
        "04 01 50 07 01 01 02 04 01 01 01 28 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 "
        "15 16 17 18 19 1a 1b 1c 1d 1e 1f 05 6d 2e 6c 67 62 78 be 00 "
    ),
    "flash_chunk": (
        "04 01 51 07 01 01 01 01 01 01 0b 61 8e c2 16 4c 47 42 31 18 f0 00 "
    ),
    "flash_ack": (
        "04 01 52 07 01 01 02 04 01 01 03 d5 49 00 "
    ),
    "flash_end": (
        "04 01 53 07 01 01 01 03 0f 90 00 "
    ),
    "flash_result": (
        "04 01 54 07 01 01 11 01 03 31 2e 30 69 6e 73 74 61 6c 6c 65 64 26 95 00 "
    ),
}


def wire(name: str) -> bytes:
    return bytes.fromhex(VECTOR_WIRE[name])


@pytest.mark.parametrize("name", sorted(VECTOR_MESSAGES))
def test_vector_encodes_to_documented_bytes(name):
    assert encode_message(VECTOR_MESSAGES[name]) == wire(name)


@pytest.mark.parametrize("name", sorted(VECTOR_MESSAGES))
def test_vector_decodes_to_documented_values(name):
    decoder = FrameDecoder()
    messages = decoder.feed(wire(name))
    assert messages == [VECTOR_MESSAGES[name]]
    assert decoder.counters["frames_ok"] == 1
    assert decode_frame(wire(name)) == VECTOR_MESSAGES[name]


def test_every_message_type_has_a_vector():
    from edge.protocol import MESSAGE_TYPES

    covered = {type(m) for m in VECTOR_MESSAGES.values()}
    missing = {cls.__name__ for cls in MESSAGE_TYPES.values()} - {cls.__name__ for cls in covered}
    assert missing == {"FlashAbort"}  # covered by the round-trip test below


def test_vectors_match_an_independent_implementation_of_the_spec():
    assert frame_from_body(1, 0x01, b"\x03hub") == wire("hello")
    assert frame_from_body(1, 0x20, struct.pack("<HB3H", 1, 3, 300, 200, 300)) == wire("buzz")
    assert frame_from_body(1, 0x30, struct.pack("<BI", 0x20, 1)) == wire("ack_buzz")
    chunk = struct.pack("<III", 7, 0, zlib.crc32(b"LGB1")) + b"LGB1"
    assert frame_from_body(1, 0x51, chunk) == wire("flash_chunk")
    sample = struct.pack("<IQB", 1, 40000, 0x3F) + _sample_raw(False).astype("<i2").tobytes()
    assert len(sample) == 85
    assert frame_from_body(1, 0x10, sample) == wire("sample_all_valid")


def test_sample_vector_values_in_units():
    frame = decode_frame(wire("sample_all_valid"))
    units = frame.scaled()
    assert units.shape == (6, 6) and units.dtype == np.float32
    assert units[0].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # Side: +1 g on z
    back = units[SENSORS.index("Back")]
    assert back[:3].tolist() == [0.0, -1.0, 1.0]
    assert back[3] == pytest.approx(164 * 2000 / 32768) == pytest.approx(10.009765625)
    lost = decode_frame(wire("sample_uarm_lost"))
    assert lost.valid_mask == 0x2F and not lost.is_valid(SENSORS.index("UArm")) and lost.is_valid(5)


# ---------------------------------------------------------------- checksums and COBS

def test_crc16_check_value_and_bitwise_agreement():
    assert crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 85, 300, 1100):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc16(data) == crc16_bitwise(data)


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926


def test_cobs_library_matches_reference_on_awkward_lengths():
    from cobs import cobs

    rng = np.random.default_rng(2)
    for n in (0, 1, 253, 254, 255, 508, 509, 1000):
        for zeros in (0.0, 0.1, 1.0):
            data = rng.integers(1, 256, n, dtype=np.uint8)
            data[rng.random(n) < zeros] = 0
            data = data.tobytes()
            assert cobs.encode(data) == cobs_encode_reference(data)
            assert cobs.decode(cobs.encode(data)) == data
            assert b"\x00" not in cobs.encode(data)


# ---------------------------------------------------------------- round trips

def _random_messages(rng: np.random.Generator):
    raw = rng.integers(-32767, 32768, (6, 6)).astype(np.int16)
    return [
        Hello(host_id="émulateur-ü"),
        Capabilities(device_id="X" * 255, firmware_version="", sample_rate_hz=100.125, accel_full_scale_g=8,
                     gyro_full_scale_dps=250, features=0xFFFF, max_payload=65535, sensors=SENSORS[::-1]),
        SampleFrame(seq=0xFFFFFFFF, t_us=(1 << 64) - 1, valid_mask=0, raw=raw),
        Status(uptime_s=0, battery_pct=255, battery_mv=0, sensor_states=(), faults=(999,)),
        Fault(sensor=255, code=0xFFFF, t_us=1, detail="x" * 200),
        Buzz(buzz_id=65535, pattern_ms=tuple(range(0, 10001, 323))[:32]),
        Nak(of_type=0xFF, ref=0xFFFFFFFF, reason=NakReason.CHUNK_CRC, detail=""),
        ManagementRequest(request_id=9, op="logs", body={"since": 1.5, "n": [1, 2], "s": "ä"}),
        ManagementResponse(request_id=9, ok=False, body={"error": "no"}, part=3, final=False),
        FlashBegin(transfer_id=0xFFFFFFFF, total_size=1, sha256=bytes(32), name="ü" * 100),
        FlashChunk(transfer_id=1, offset=0xFFFFFFFF - 5, data=rng.integers(0, 256, MAX_FLASH_CHUNK,
                                                                             dtype=np.uint8).tobytes()),
        FlashEnd(transfer_id=3, dry_run=True, force=True),
        FlashResult(transfer_id=3, ok=False, message="signature by an untrusted key", active_version=""),
        FlashAbort(transfer_id=3, reason="user pressed ctrl-c"),
    ]


def test_round_trip_of_edge_values_for_every_type():
    messages = _random_messages(np.random.default_rng(3))
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    out = decoder.feed(stream)
    assert out == messages
    assert decoder.counters["frames_ok"] == len(messages)
    assert sum(decoder.counters[k] for k in COUNTER_NAMES if k not in ("frames_ok", "bytes_in")) == 0


def test_byte_at_a_time_feeding_gives_the_same_messages():
    messages = _random_messages(np.random.default_rng(4))
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i:i + 1])
    assert out == messages


def test_flash_chunk_crc_is_checked_by_the_receiver():
    chunk = FlashChunk(transfer_id=1, offset=0, data=b"abc")
    assert chunk.crc32 == zlib.crc32(b"abc") and chunk.crc_ok
    bad = FlashChunk(transfer_id=1, offset=0, data=b"abc", crc32=chunk.crc32 ^ 1)
    decoded = decode_frame(encode_message(bad))
    assert decoded == bad and not decoded.crc_ok


def test_units_conversion_round_trip_and_limits():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.uniform(-15, 15, (100, 3)), rng.uniform(-1900, 1900, (100, 3))], axis=1)
    raw = units_to_raw(values)
    back = raw_to_units(raw)
    lsb = np.array([16 / 32768] * 3 + [2000 / 32768] * 3)
    assert np.all(np.abs(back - values) <= lsb / 2 + 1e-4)
    clipped = units_to_raw(np.array([[100.0, -100.0, 0, 1e6, -1e6, np.nan]]))
    assert clipped.tolist() == [[32767, -32767, 0, 32767, -32767, RAW_INVALID]]


# ---------------------------------------------------------------- encoder refuses what the wire cannot carry

@pytest.mark.parametrize("message, words", [
    (Buzz(buzz_id=1, pattern_ms=()), "1 to 32"),
    (Buzz(buzz_id=1, pattern_ms=(100,) * 33), "33 entries"),
    (Buzz(buzz_id=1, pattern_ms=(20000,)), "20000 ms"),
    (Buzz(buzz_id=70000, pattern_ms=(1,)), "70000"),
    (SampleFrame(raw=np.zeros((6, 5), np.int16)), "(6, 5)"),
    (SampleFrame(valid_mask=0x40), "mask"),
    (Status(battery_pct=101), "101"),
    (FlashBegin(sha256=b"short", total_size=1), "5 bytes"),
    (FlashChunk(data=b""), "0 bytes"),
    (FlashChunk(data=b"x" * (MAX_FLASH_CHUNK + 1)), str(MAX_FLASH_CHUNK + 1)),
    (Hello(host_id="x" * 256), "256 bytes"),
    (ManagementRequest(op=""), "op is empty"),
    (ManagementRequest(op="status", body={"x": object()}), "JSON"),
    (ManagementResponse(body=[1]), "list"),
    (Ack(of_type=256), "width"),
])
def test_encoder_rejects_unrepresentable_values(message, words):
    with pytest.raises(ProtocolError) as info:
        encode_message(message)
    assert words in str(info.value)


def test_payload_limit():
    response = ManagementResponse(body={"log": "x" * (MAX_PAYLOAD + 1)})
    with pytest.raises(ProtocolError, match="payload of"):
        encode_message(response)


# ---------------------------------------------------------------- decoder: every problem counted

def _counters(decoder: FrameDecoder, *names: str) -> dict:
    return {n: decoder.counters[n] for n in names}


def _only(decoder: FrameDecoder, **expected: int) -> None:
    """Assert the problem counters are exactly ``expected`` (others zero)."""
    problems = {k: v for k, v in decoder.counters.items() if k not in ("bytes_in", "frames_ok") and v}
    assert problems == expected


def test_resynchronises_after_garbage_anywhere():
    good = [VECTOR_MESSAGES["buzz"], VECTOR_MESSAGES["sample_all_valid"], VECTOR_MESSAGES["ack_buzz"]]
    noise = bytes([0x55, 0x61, 0xFF, 0x13, 0x37])  # no zero byte: merges with the following frame
    stream = (b"\x00" + noise + b"\x00" + encode_message(good[0]) + noise + b"\x00" + encode_message(good[1])
              + encode_message(good[2]))
    decoder = FrameDecoder()
    assert decoder.feed(stream) == good
    assert decoder.counters["garbage_bytes"] == 2 * (len(noise) + 1)
    assert decoder.counters["frames_ok"] == 3


def test_garbage_glued_to_a_frame_loses_only_that_frame():
    frames = [encode_message(SampleFrame(seq=i)) for i in range(5)]
    stream = frames[0] + b"\x17\x99" + frames[1] + frames[2] + frames[3][:10] + frames[4]
    decoder = FrameDecoder()
    out = decoder.feed(stream)
    assert [m.seq for m in out] == [0, 2]  # 1 is spoiled by the prefix; 3 is cut and spoils 4
    assert decoder.counters["seq_gap"] == 1 and decoder.counters["seq_missed"] == 1
    bad = sum(decoder.counters[k] for k in ("bad_cobs", "bad_crc", "truncated"))
    assert bad == 2
    assert decoder.counters["garbage_bytes"] == len(frames[1]) + 2 + 10 + len(frames[4])
    # The next good frame decodes again.
    assert [m.seq for m in decoder.feed(encode_message(SampleFrame(seq=5)))] == [5]


def test_truncated_frames_are_counted():
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01\x02\x00") == []  # body of 1 byte
    _only(decoder, truncated=1, garbage_bytes=3)
    decoder = FrameDecoder()
    assert decoder.feed(b"\x09\x01\x01\x00") == []  # code byte promises 8 bytes, 2 arrive
    _only(decoder, truncated=1, garbage_bytes=4)
    assert "COBS" in decoder.last_problem


def test_bad_crc_is_counted_and_described():
    body = bytearray(encode_body(VECTOR_MESSAGES["buzz"]))
    body[4] ^= 0x01  # flip a payload bit, keep the old CRC
    from cobs import cobs

    decoder = FrameDecoder()
    assert decoder.feed(cobs.encode(bytes(body)) + b"\x00") == []
    _only(decoder, bad_crc=1, garbage_bytes=len(cobs.encode(bytes(body))) + 1)
    assert decoder.last_problem.startswith("bad_crc: CRC 0x")
    with pytest.raises(BadFrame, match="CRC"):
        decode_frame(cobs.encode(bytes(body)))


def test_bad_version_and_unknown_type_are_counted():
    decoder = FrameDecoder()
    assert decoder.feed(frame_from_body(PROTOCOL_VERSION + 1, 0x01, b"\x00")) == []
    assert decoder.feed(frame_from_body(PROTOCOL_VERSION, 0x7E, b"hello")) == []
    _only(decoder, bad_version=1, unknown_type=1, garbage_bytes=decoder.counters["garbage_bytes"])
    assert "0x7e" in decoder.last_problem


@pytest.mark.parametrize("type_byte, payload", [
    (0x10, bytes(84)),  # SampleFrame one byte short
    (0x10, bytes(86)),  # and one byte long
    (0x01, b"\x02\xff\xfe"),  # Hello with invalid UTF-8
    (0x01, b"\x05ab"),  # string longer than the payload
    (0x30, b"\x20\x01\x00\x00\x00\x99"),  # Ack with a trailing byte
    (0x40, b"\x01\x00\x06status{bad json"),
    (0x40, b"\x01\x00\x06status[1,2]"),  # JSON that is not an object
    (0x40, b"\x01\x00\x00{}"),  # empty op
    (0x20, b"\x01\x00\x03\x2c\x01"),  # Buzz promising 3 entries, carrying 1
])
def test_bad_payloads_are_counted(type_byte, payload):
    decoder = FrameDecoder()
    assert decoder.feed(frame_from_body(1, type_byte, payload)) == []
    assert decoder.counters["bad_payload"] == 1 and decoder.counters["frames_ok"] == 0


@pytest.mark.parametrize("type_byte, payload, words", [
    (0x11, struct.pack("<IBHB", 1, 150, 0, 0) + b"\x00", "battery_pct 150"),
    (0x11, struct.pack("<IBHB", 1, 50, 0, 1) + b"\x09" + b"\x00", "sensor_states[0] = 9"),
    (0x12, struct.pack("<BHQ", 7, 1, 0) + b"\x00", "Fault.sensor 7"),
    (0x20, struct.pack("<HBH", 1, 1, 10001), "10001 ms"),
    (0x20, struct.pack("<HB", 1, 0), "0 entries"),
    (0x31, struct.pack("<BIB", 1, 1, 99) + b"\x00", "reason 99"),
    (0x02, b"\x00\x00" + struct.pack("<IHHHH", 0, 16, 2000, 0, 0) + b"\x00", "0 mHz"),
    (0x50, struct.pack("<II", 1, 0) + bytes(32) + b"\x00", "total_size 0"),
    (0x53, struct.pack("<IB", 1, 4), "flags 0x04"),
])
def test_out_of_range_values_are_counted_and_dropped(type_byte, payload, words):
    decoder = FrameDecoder()
    assert decoder.feed(frame_from_body(1, type_byte, payload)) == []
    assert decoder.counters["out_of_range"] == 1 and decoder.counters["frames_ok"] == 0
    assert words in decoder.last_problem


def test_impossible_sample_validity_is_cleared_not_dropped():
    raw = np.ones((6, 6), np.int16)
    raw[2, 4] = RAW_INVALID  # RtWt marked valid but carrying the no-reading value
    payload = struct.pack("<IQB", 3, 120000, 0xFF) + raw.astype("<i2").tobytes()
    decoder = FrameDecoder()
    (frame,) = decoder.feed(frame_from_body(1, 0x10, payload))
    assert frame.valid_mask == 0x3F & ~(1 << 2)
    assert decoder.counters["out_of_range"] == 1 and decoder.counters["frames_ok"] == 1
    assert "RtWt" in decoder.last_problem and "bits above" in decoder.last_problem


def test_oversize_run_without_delimiter_is_skipped_then_resyncs():
    decoder = FrameDecoder(max_payload=256)
    junk = bytes(range(1, 256)) * 40  # 10200 non-zero bytes
    out = decoder.feed(junk[:5000]) + decoder.feed(junk[5000:]) + decoder.feed(b"\x00" + wire("buzz"))
    assert out == [VECTOR_MESSAGES["buzz"]]
    assert decoder.counters["oversize"] == 1
    assert decoder.counters["garbage_bytes"] == len(junk)


def test_empty_frames_between_delimiters_are_ignored():
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00" + wire("hello") + b"\x00\x00") == [VECTOR_MESSAGES["hello"]]
    _only(decoder)


def test_sequence_repeats_reorders_gaps_and_resets():
    seqs = [10, 11, 11, 12, 15, 14, 16, 5000, 400, 401, 0xFFFFFFFF, 0, 2]
    decoder = FrameDecoder()
    out = decoder.feed(b"".join(encode_message(SampleFrame(seq=s)) for s in seqs))
    # 11 again is a repeat and 14 after 15 a reorder: both dropped. 400 after 5000 steps back
    # further than the reorder window (a restart), as does 0xFFFFFFFF after 401; 0 follows by wrap.
    assert [m.seq for m in out] == [10, 11, 12, 15, 16, 5000, 400, 401, 0xFFFFFFFF, 0, 2]
    assert _counters(decoder, "seq_repeat", "seq_reorder", "seq_gap", "seq_missed", "seq_reset") == {
        "seq_repeat": 1, "seq_reorder": 1, "seq_gap": 3, "seq_missed": 2 + 4983 + 1, "seq_reset": 2}


def test_sequence_classification_exact():
    from edge.protocol import SequenceTracker

    tracker = SequenceTracker(reorder_window=256)
    verdicts = [tracker.check(s) for s in
                [10, 11, 11, 12, 15, 14, 16, 1000, 500, 0xFFFFFFFF, 0, 1, 1 << 30]]
    assert verdicts == ["first", "next", "repeat", "next", "gap", "reorder", "next", "gap", "reset",
                        "reset", "next", "next", "reset"]


def test_capabilities_resets_the_sequence_check():
    decoder = FrameDecoder()
    stream = (encode_message(SampleFrame(seq=100)) + encode_message(VECTOR_MESSAGES["capabilities"])
              + encode_message(SampleFrame(seq=99)))
    out = decoder.feed(stream)
    assert [type(m).__name__ for m in out] == ["SampleFrame", "Capabilities", "SampleFrame"]
    assert decoder.counters["seq_reorder"] == 0


def test_status_and_fault_codes_decode_to_names_and_keep_unknown_codes():
    status = decode_frame(encode_message(Status(sensor_states=(SensorState.STUCK,), faults=(5, 4242))))
    assert status.sensor_states == (SensorState.STUCK,)
    assert status.faults == (FaultCode.LOW_BATTERY, 4242)
    assert json.dumps([int(f) for f in status.faults]) == "[5, 4242]"
