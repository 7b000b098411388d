"""Fuzzing the frame decoder: no byte stream may make it raise or misbehave.

Three generators, all seeded:

* random bytes (with extra zeros, so frames of every length appear);
* valid multi-message streams mutated by bit flips, byte changes, inserted
  and deleted runs, truncation and duplication;
* structure-aware frames: correct COBS and CRC around random or mutated
  payloads of every known type (and some unknown), so the payload parsers
  themselves get random input, not just the CRC check;
* valid messages of every type with random field values (edges included),
  sometimes mutated.

Each stream goes through a fresh :class:`~edge.protocol.FrameDecoder` in
random-sized pieces. Checks per stream: nothing escapes; the decoder's own
safety net (``internal_errors``) never fired; ``bytes_in`` and
``frames_ok`` agree with what went in and came out; every message that came
out encodes again and decodes to an equal message. The default run is
120,000 streams (well under 60 s here); ``-m slow`` runs 2,000,000.
"""

from __future__ import annotations

import random
import struct
import time

import numpy as np
import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.protocol import (MESSAGE_TYPES, Ack, Buzz, Capabilities, Fault, FlashAbort, FlashBegin, FlashChunk,
                           FlashEnd, FlashResult, FrameDecoder, Hello, ManagementRequest, ManagementResponse, Nak,
                           SampleFrame, Status, crc16, decode_frame, encode_body, encode_message)


def _seed_messages(rng: random.Random) -> list:
    raw = np.array([[rng.randint(-32768, 32767) for _ in range(6)] for _ in range(6)], np.int16)
    return [
        Hello(host_id="hub"), Capabilities(device_id="SH", firmware_version="1"),
        SampleFrame(seq=rng.randrange(1 << 32), t_us=rng.randrange(1 << 63), valid_mask=rng.randrange(64), raw=raw),
        Status(uptime_s=5, battery_pct=50, battery_mv=3800, faults=(1, 2)),
        Fault(sensor=2, code=4, t_us=9, detail="stuck"), Buzz(buzz_id=3, pattern_ms=(100, 50, 100)),
        Ack(of_type=0x20, ref=3), Nak(of_type=0x20, ref=3, reason=6, detail="busy"),
        ManagementRequest(request_id=1, op="logs", body={"n": 5}),
        ManagementResponse(request_id=1, ok=True, body={"lines": ["a", "b"]}, part=1, final=False),
        FlashBegin(transfer_id=1, total_size=100, sha256=bytes(range(32)), name="b.lgb"),
        FlashChunk(transfer_id=1, offset=0, data=bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))),
        FlashEnd(transfer_id=1, dry_run=True), FlashResult(transfer_id=1, ok=True, message="ok", active_version="2"),
        FlashAbort(transfer_id=1, reason="x"),
    ]


def _text(rng: random.Random, limit: int = 40) -> str:
    return "".join(rng.choice("abcXYZ09 _-é€") for _ in range(rng.randint(0, limit)))


def _random_message(rng: random.Random):
    """A valid message of a random type with random field values (edges included)."""
    u = rng.randrange
    kind = u(15)
    if kind == 0:
        return Hello(host_id=_text(rng))
    if kind == 1:
        return Capabilities(device_id=_text(rng), firmware_version=_text(rng), sample_rate_hz=u(1, 10**6) / 1000,
                            accel_full_scale_g=u(1, 1 << 16), gyro_full_scale_dps=u(1, 1 << 16),
                            features=u(1 << 16), max_payload=u(1 << 16),
                            sensors=tuple(_text(rng, 8) for _ in range(u(17))))
    if kind == 2:
        raw = np.array([u(-32768, 32768) for _ in range(36)], np.int16).reshape(6, 6)
        return SampleFrame(seq=u(1 << 32), t_us=u(1 << 64), valid_mask=u(64), raw=raw)
    if kind == 3:
        return Status(uptime_s=u(1 << 32), battery_pct=rng.choice((u(101), 255)), battery_mv=u(1 << 16),
                      sensor_states=tuple(u(6) for _ in range(u(17))), faults=tuple(u(1 << 16) for _ in range(u(33))))
    if kind == 4:
        return Fault(sensor=rng.choice((u(6), 255)), code=u(1 << 16), t_us=u(1 << 64), detail=_text(rng))
    if kind == 5:
        return Buzz(buzz_id=u(1 << 16), pattern_ms=tuple(u(10001) for _ in range(u(1, 33))))
    if kind == 6:
        return Ack(of_type=u(256), ref=u(1 << 32))
    if kind == 7:
        return Nak(of_type=u(256), ref=u(1 << 32), reason=u(1, 14), detail=_text(rng))
    if kind == 8:
        return ManagementRequest(request_id=u(1 << 16), op=_text(rng, 10) or "status",
                                 body={_text(rng, 5): rng.choice((u(100), _text(rng), None, [1.5]))
                                       for _ in range(u(4))})
    if kind == 9:
        return ManagementResponse(request_id=u(1 << 16), ok=rng.random() < 0.5, part=u(1 << 16),
                                  final=rng.random() < 0.5, body={"k": _text(rng)})
    if kind == 10:
        return FlashBegin(transfer_id=u(1 << 32), total_size=u(1, 1 << 32),
                          sha256=bytes(u(256) for _ in range(32)), name=_text(rng))
    if kind == 11:
        return FlashChunk(transfer_id=u(1 << 32), offset=u(1 << 32), data=bytes(u(256) for _ in range(u(1, 200))),
                          crc32=rng.choice((None, u(1 << 32))))
    if kind == 12:
        return FlashEnd(transfer_id=u(1 << 32), dry_run=rng.random() < 0.5, force=rng.random() < 0.5)
    if kind == 13:
        return FlashResult(transfer_id=u(1 << 32), ok=rng.random() < 0.5, message=_text(rng),
                           active_version=_text(rng, 10))
    return FlashAbort(transfer_id=u(1 << 32), reason=_text(rng))


def _random_bytes(rng: random.Random) -> bytes:
    n = rng.randint(0, 120)
    zero_share = rng.choice((0.0, 0.02, 0.2))
    return bytes(0 if rng.random() < zero_share else rng.randrange(256) for _ in range(n))


def _mutate(data: bytearray, rng: random.Random) -> bytearray:
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if not data:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            continue
        i = rng.randrange(len(data))
        if op == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[i] = rng.choice((0, 0xFF, rng.randrange(256)))
        elif op == 2:
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:
            del data[i:i + rng.randint(1, 16)]
        elif op == 4:
            del data[i:]
        elif op == 5:
            j = rng.randrange(len(data))
            data[j:j] = data[i:i + rng.randint(1, 32)]
        else:
            data[i:i] = b"\x00"
    return data


def _mutated_stream(rng: random.Random, pool: list) -> bytes:
    stream = bytearray(b"".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
    return bytes(_mutate(stream, rng))


def _structured_frame(rng: random.Random, pool_bodies: list) -> bytes:
    """Correct COBS + CRC around a random or mutated payload."""
    if rng.random() < 0.5:
        body = bytearray(rng.choice(pool_bodies)[:-2])  # version, type, payload without CRC
        payload = _mutate(body[2:], rng)
        head = bytes(body[:2]) + bytes(payload)
    else:
        type_byte = rng.choice(list(MESSAGE_TYPES)) if rng.random() < 0.9 else rng.randrange(256)
        version = 1 if rng.random() < 0.95 else rng.randrange(256)
        n = rng.choice((0, 1, 2, 4, 5, 8, 12, 13, 40, 85, rng.randint(0, 300)))
        head = bytes((version, type_byte)) + bytes(rng.randrange(256) for _ in range(n))
    return cobs.encode(head + struct.pack("<H", crc16(head))) + b"\x00"


def _feed_in_pieces(decoder: FrameDecoder, stream: bytes, rng: random.Random) -> list:
    out = []
    i = 0
    while i < len(stream):
        step = rng.choice((1, 3, 17, 64, len(stream)))
        out += decoder.feed(stream[i:i + step])
        i += step
    return out


def run_fuzz(n_streams: int, seed: int) -> dict:
    """Push ``n_streams`` seeded streams through fresh decoders; raise AssertionError on misbehaviour.

    Returns:
        Totals: streams, bytes, messages out, and per-counter sums.
    """
    rng = random.Random(seed)
    pool_msgs = _seed_messages(rng)
    pool = [encode_message(m) for m in pool_msgs]
    pool_bodies = [encode_body(m) for m in pool_msgs]
    totals = {"streams": 0, "bytes": 0, "messages": 0}
    counter_sums: dict = {}
    for index in range(n_streams):
        kind = index % 4
        if kind == 0:
            stream = _random_bytes(rng)
        elif kind == 1:
            stream = _mutated_stream(rng, pool)
        elif kind == 2:
            stream = b"".join(_structured_frame(rng, pool_bodies) for _ in range(rng.randint(1, 3)))
        else:  # valid messages with random field values; now and then a mutation
            messages = [_random_message(rng) for _ in range(rng.randint(1, 3))]
            stream = b"".join(encode_message(m) for m in messages)
            if rng.random() < 0.3:
                stream = bytes(_mutate(bytearray(stream), rng))
        decoder = FrameDecoder(track_sequence=rng.random() < 0.7)
        try:
            out = _feed_in_pieces(decoder, stream, rng)
        except Exception as exc:  # the property under test: this never happens
            raise AssertionError(f"stream {index} ({stream.hex()}) raised {type(exc).__name__}: {exc}") from exc
        c = decoder.counters
        assert c["internal_errors"] == 0, f"stream {index} ({stream.hex()}): {decoder.last_problem}"
        assert c["bytes_in"] == len(stream)
        assert c["frames_ok"] == len(out)
        for message in out:
            assert type(message) in MESSAGE_TYPES.values()
            assert decode_frame(encode_message(message)) == message, f"stream {index}: {message!r}"
        totals["streams"] += 1
        totals["bytes"] += len(stream)
        totals["messages"] += len(out)
        for key, value in c.items():
            counter_sums[key] = counter_sums.get(key, 0) + value
    totals["counters"] = counter_sums
    return totals


def test_fuzz_120k_streams_never_raise():
    start = time.perf_counter()
    totals = run_fuzz(120_000, seed=20261126)
    elapsed = time.perf_counter() - start
    assert totals["streams"] == 120_000
    sums = totals["counters"]
    # The generators really reach every kind of problem and the parsers, not just the CRC check.
    # (bad_cobs cannot happen here: pieces are split at 0x00, so every COBS failure is a truncation.)
    for name in ("truncated", "bad_crc", "bad_version", "unknown_type", "bad_payload", "out_of_range",
                 "garbage_bytes", "seq_repeat"):
        assert sums[name] > 0, f"fuzzing never produced {name}: {sums}"
    assert totals["messages"] > 10_000
    assert elapsed < 60, f"fuzz run took {elapsed:.1f} s; expected < 60 s"


def test_oversize_frames_under_fuzz():
    rng = random.Random(7)
    for _ in range(200):
        decoder = FrameDecoder(max_payload=rng.choice((16, 64, 256)))
        stream = bytes(rng.randrange(1, 256) for _ in range(rng.randint(300, 3000)))  # > max_encoded
        stream += b"\x00" + encode_message(Ack(of_type=1, ref=2))
        out = _feed_in_pieces(decoder, stream, rng)
        assert out == [Ack(of_type=1, ref=2)]
        assert decoder.counters["internal_errors"] == 0 and decoder.counters["oversize"] >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=200),
    st.sampled_from([encode_message(m) for m in _seed_messages(random.Random(1))]),
    st.builds(lambda t, p: cobs.encode(bytes((1, t)) + p + struct.pack("<H", crc16(bytes((1, t)) + p))) + b"\x00",
              st.sampled_from(sorted(MESSAGE_TYPES)), st.binary(max_size=120)),
), max_size=8), st.integers(1, 64))
def test_hypothesis_streams_never_raise(pieces, chunk):
    stream = b"".join(pieces)
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        out += decoder.feed(stream[i:i + chunk])
    assert decoder.counters["internal_errors"] == 0
    assert decoder.counters["frames_ok"] == len(out)
    for message in out:
        assert decode_frame(encode_message(message)) == message


@pytest.mark.slow
def test_fuzz_two_million_streams_never_raise():
    totals = run_fuzz(2_000_000, seed=99)
    assert totals["streams"] == 2_000_000
