"""Benchmark the sensor-hub protocol: decoder and encoder throughput, and the serial path end to end.

Figures recorded (``python -m benchmarks protocol``):

* ``protocol_decode_sample_frames_per_s``: SampleFrames decoded per second
  from one long in-memory stream fed in 4 KiB reads (what the serial
  source's reader thread does), with the sequence check on;
* ``protocol_decode_cpu_share_at_25hz``: the share of one core that
  decoding a belt's 25 frames per second would cost at hot-loop speed
  (25 / throughput); a lower bound, since a frame every 40 ms runs cold;
* ``protocol_decode_garbage_mb_per_s``: random bytes rejected per second
  (a noisy line must not eat the CPU);
* ``protocol_encode_sample_frames_per_s``: SampleFrames encoded per second;
* ``serial_source_frames_per_s``: frames per second through the whole
  serial path: the emulator playing as fast as it can onto a
  pseudo-terminal, the ``serial://`` source's pyserial reader thread,
  decoding, scaling and the asyncio queue, until six readings per frame
  reach the consumer. Expressed also as a multiple of real time.
* ``serial_source_cpu_share_at_25hz``: CPU time of the ``serial://``
  source at real time (its reader thread plus the asyncio thread consuming
  every event), from ``/proc/self/task/<tid>/stat``, over 20 s of a
  sensor hub streaming 25 Hz; the emulator's own thread is excluded;
* ``serial_buzz_to_sensor_hub_ms`` and ``serial_buzz_ack_ms``: median time
  from ``SerialHubSource.send_buzz`` to the emulated sensor hub having the
  Buzz (when a real one starts its motor), and to the Ack coming back,
  over 50 buzzes while samples stream at real time.

All inputs are seeded; each figure is the best of three runs.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

from benchmarks.harness import record
from edge.protocol import FrameDecoder, SampleFrame, encode_message


def _frames(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    raw = rng.integers(-3000, 3000, (n, 6, 6)).astype(np.int16)
    return b"".join(encode_message(SampleFrame(seq=i, t_us=40_000 * i, raw=raw[i])) for i in range(n))


def _decode_rate(stream: bytes, n_frames: int, chunk: int = 4096) -> float:
    best = 0.0
    for _ in range(3):
        decoder = FrameDecoder()
        start = time.perf_counter()
        count = 0
        for i in range(0, len(stream), chunk):
            count += len(decoder.feed(stream[i:i + chunk]))
        elapsed = time.perf_counter() - start
        assert count == n_frames, (count, n_frames, decoder.counters)
        best = max(best, n_frames / elapsed)
    return best


def _garbage_rate(n_bytes: int) -> float:
    data = np.random.default_rng(1).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    best = 0.0
    for _ in range(3):
        decoder = FrameDecoder()
        start = time.perf_counter()
        for i in range(0, len(data), 4096):
            decoder.feed(data[i:i + 4096])
        best = max(best, n_bytes / (time.perf_counter() - start) / 1e6)
    return best


def _encode_rate(n: int) -> float:
    raw = np.random.default_rng(2).integers(-3000, 3000, (n, 6, 6)).astype(np.int16)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            encode_message(SampleFrame(seq=i, t_us=40_000 * i, raw=raw[i]))
        best = max(best, n / (time.perf_counter() - start))
    return best


async def _serial_path_rate(n: int) -> float:
    from edge.sources.base import SensorReading
    from edge.sources.serial_hub import SerialHubSource
    from host.sensorhub_emulator import SensorHubEmulator

    rng = np.random.default_rng(3)
    samples = rng.normal(0, 0.5, (n, 36))
    timestamps = 1.7e9 + np.arange(n) / 25.0
    emulator = SensorHubEmulator(None, samples, timestamps, speed=0, status_interval_s=0).start()
    source = SerialHubSource(f"serial://{emulator.path}?hello=2&silence=30")
    try:
        await source.open()
        start = None
        readings = 0
        async for event in source.events():
            if isinstance(event, SensorReading):
                if start is None:
                    start = time.perf_counter()
                readings += 1
                if event.seq == n - 1 and event.sensor == "Thig":
                    break
        elapsed = time.perf_counter() - start
        frames = readings / 6
        if frames < n * 0.99:
            raise RuntimeError(f"serial path lost frames: {frames:.0f} of {n}; {source.health()}")
        return frames / elapsed
    finally:
        await source.close()
        emulator.stop()


async def _buzz_latency(n_buzzes: int = 50):
    from edge.sources.serial_hub import SerialHubSource
    from host.sensorhub_emulator import SensorHubEmulator

    rng = np.random.default_rng(4)
    n = 25 * 60
    emulator = SensorHubEmulator(None, rng.normal(0, 0.5, (n, 36)), 1.7e9 + np.arange(n) / 25.0,
                                 speed=1.0).start()
    source = SerialHubSource(f"serial://{emulator.path}?hello=2")
    to_hub, round_trip = [], []
    try:
        await source.open()
        drain = asyncio.create_task(_drain(source))
        await asyncio.sleep(0.5)
        for i in range(n_buzzes):
            before = len(emulator.buzz_records)
            t0 = time.monotonic()
            ok = await source.send_buzz([100, 50, 100])
            t1 = time.monotonic()
            if not ok:
                raise RuntimeError(f"buzz {i} not acknowledged: {source.health()['counters']}")
            round_trip.append((t1 - t0) * 1000)
            to_hub.append((emulator.buzz_records[before].t_host - t0) * 1000)
            await asyncio.sleep(0.03 + 0.01 * (i % 3))  # off the frame grid now and then
        drain.cancel()
    finally:
        await source.close()
        emulator.stop()
    return float(np.median(to_hub)), float(np.percentile(to_hub, 95)), float(np.median(round_trip))


def _thread_cpu_s(tid: int) -> float:
    """User + system CPU seconds of one thread of this process (Linux)."""
    import os

    fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _source_cpu_share(seconds: float = 20.0) -> float:
    import threading

    from edge.sources.serial_hub import SerialHubSource
    from host.sensorhub_emulator import SensorHubEmulator

    n = int(25 * (seconds + 5))
    rng = np.random.default_rng(5)
    emulator = SensorHubEmulator(None, rng.normal(0, 0.5, (n, 36)), 1.7e9 + np.arange(n) / 25.0,
                                 speed=1.0).start()
    source = SerialHubSource(f"serial://{emulator.path}?hello=2")
    try:
        await source.open()
        drain = asyncio.create_task(_drain(source))
        await asyncio.sleep(1.0)
        reader_tid = source._thread.native_id
        main_tid = threading.get_native_id()
        frames0 = source.counters.get("frames", 0)
        cpu0 = _thread_cpu_s(reader_tid) + _thread_cpu_s(main_tid)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        cpu = _thread_cpu_s(reader_tid) + _thread_cpu_s(main_tid) - cpu0
        wall = time.monotonic() - t0
        frames = source.counters.get("frames", 0) - frames0
        drain.cancel()
        if frames < 0.95 * 25 * seconds:
            raise RuntimeError(f"only {frames} frames in {wall:.1f} s; expected about {25 * seconds:.0f}")
        return cpu / wall * 100
    finally:
        await source.close()
        emulator.stop()


async def _drain(source) -> None:
    async for _ in source.events():
        pass


def main() -> None:
    """Measure and record the protocol figures."""
    n = 50_000
    print(f"protocol: encoding {n} sample frames", file=sys.stderr, flush=True)
    stream = _frames(n)
    print("protocol: decoder throughput", file=sys.stderr, flush=True)
    rate = _decode_rate(stream, n)
    record("protocol_decode_sample_frames_per_s", round(rate), "frames/s", ">= 2500 (100x real time)",
           rate >= 2500, f"{n} SampleFrames ({len(stream) / n:.0f} B each) fed in 4 KiB reads, sequence check on; "
                         "best of 3")
    share = 25.0 / rate * 100
    record("protocol_decode_cpu_share_at_25hz", round(share, 4), "% of one core", "< 2 % (hub budget, all of it)",
           share < 2.0, "25 frames/s divided by the hot-loop decoder throughput above; frames arriving one per 40 ms "
           "cost more (cold caches): see serial_source_cpu_share_at_25hz for the measured real-time cost")
    print("protocol: garbage throughput", file=sys.stderr, flush=True)
    garbage = _garbage_rate(4_000_000)
    record("protocol_decode_garbage_mb_per_s", round(garbage, 2), "MB/s", ">= 0.0922 (921,600 baud of noise)",
           garbage >= 0.09216, "4 MB of seeded random bytes, rejected and counted")
    print("protocol: encoder throughput", file=sys.stderr, flush=True)
    enc = _encode_rate(20_000)
    record("protocol_encode_sample_frames_per_s", round(enc), "frames/s", ">= 2500 (100x real time)", enc >= 2500,
           "SampleFrame -> COBS wire bytes, 20,000 frames; best of 3")
    print("protocol: serial path end to end (emulator -> pty -> serial:// source)", file=sys.stderr, flush=True)
    best = 0.0
    for _ in range(3):
        best = max(best, asyncio.run(_serial_path_rate(10_000)))
    record("serial_source_frames_per_s", round(best), "frames/s", ">= 2500 (100x real time)", best >= 2500,
           f"emulator at speed 0 on a pseudo-terminal, pyserial reader thread, decode, scale, asyncio queue; "
           f"10,000 frames = 60,000 readings; {best / 25:.0f}x real time; best of 3")
    print("protocol: serial source CPU at real time (20 s)", file=sys.stderr, flush=True)
    cpu_share = asyncio.run(_source_cpu_share(20.0))
    record("serial_source_cpu_share_at_25hz", round(cpu_share, 3), "% of one core", "< 2 % (hub budget, all of it)",
           cpu_share < 2.0, "reader thread + asyncio consumer thread CPU (/proc per-thread stat, 10 ms ticks) over "
                            "20 s of a 25 Hz sensor hub on a pty; emulator thread excluded")
    print("protocol: buzz latency over serial (50 buzzes while streaming at real time)", file=sys.stderr, flush=True)
    median_hub, p95_hub, median_ack = asyncio.run(_buzz_latency())
    record("serial_buzz_to_sensor_hub_ms", round(median_hub, 2), "ms", "< 50 ms (median)", median_hub < 50,
           f"send_buzz() to the emulated sensor hub decoding the Buzz over a pty, samples streaming at 25 Hz; "
           f"p95 {p95_hub:.2f} ms; 50 buzzes")
    record("serial_buzz_ack_ms", round(median_ack, 2), "ms", "< 50 ms (median)", median_ack < 50,
           "send_buzz() until the Ack is back and the call returns True; 50 buzzes")
    print(f"protocol: decode {rate:.0f} frames/s, garbage {garbage:.1f} MB/s, encode {enc:.0f} frames/s, "
          f"serial path {best:.0f} frames/s", file=sys.stderr)


if __name__ == "__main__":
    main()
