"""The C reference code in docs/protocol.md compiles and agrees with edge.protocol.

The firmware engineer copies the CRC-16 and COBS functions from the
document; this test extracts them verbatim, compiles them with the system C
compiler, and checks them against the Python side on edge-case and random
inputs, and against the documented test vectors.
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from cobs import cobs

from edge.protocol import crc16, encode_body

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"

HARNESS = r"""
#include <stdio.h>
#include <string.h>
/* Reads records (u32 length, bytes) on stdin. Mode "enc": writes (u32 length, COBS bytes, u16 CRC).
   Mode "dec": writes (i32 decoded length or -1, decoded bytes, i32 body_ok). */
int main(int argc, char **argv) {
    static uint8_t in[20000], out[21000];
    int decode = argc > 1 && strcmp(argv[1], "dec") == 0;
    uint32_t n;
    while (fread(&n, sizeof n, 1, stdin) == 1) {
        if (n > sizeof in || fread(in, 1, n, stdin) != n) return 2;
        if (decode) {
            int32_t m = (int32_t)cobs_decode(in, n, out);
            int32_t ok = m >= 0 ? body_ok(out, m) : 0;
            fwrite(&m, sizeof m, 1, stdout);
            if (m > 0) fwrite(out, 1, (size_t)m, stdout);
            fwrite(&ok, sizeof ok, 1, stdout);
        } else {
            uint32_t m = (uint32_t)cobs_encode(in, n, out);
            uint16_t c = crc16_ccitt_false(in, n);
            fwrite(&m, sizeof m, 1, stdout);
            fwrite(out, 1, m, stdout);
            fwrite(&c, sizeof c, 1, stdout);
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def reference_binary(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler on this machine")
    blocks = re.findall(r"```c\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "docs/protocol.md should hold exactly one C block"
    folder = tmp_path_factory.mktemp("cref")
    source = folder / "ref.c"
    source.write_text("#include <stdint.h>\n#include <stddef.h>\n" + blocks[0] + HARNESS)
    binary = folder / "ref"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary), str(source)], check=True,
                   capture_output=True, timeout=60)
    return binary


def run_reference(binary: Path, inputs):
    blob = b"".join(struct.pack("=I", len(x)) + x for x in inputs)
    out = subprocess.run([str(binary)], input=blob, capture_output=True, check=True, timeout=60).stdout
    results, pos = [], 0
    size_len = struct.calcsize("=I")
    for _ in inputs:
        (m,) = struct.unpack_from("=I", out, pos)
        pos += size_len
        encoded = out[pos:pos + m]
        pos += m
        (crc,) = struct.unpack_from("=H", out, pos)
        pos += 2
        results.append((encoded, crc))
    assert pos == len(out)
    return results


def test_c_reference_matches_python_on_edge_cases_and_random_data(reference_binary):
    rng = random.Random(42)
    inputs = [b"123456789"]
    for n in (0, 1, 2, 253, 254, 255, 256, 507, 508, 509, 510, 1000, 4096):
        for zero_share in (0.0, 0.01, 0.5, 1.0):
            inputs.append(bytes(0 if rng.random() < zero_share else rng.randrange(1, 256) for _ in range(n)))
    inputs += [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1500))) for _ in range(300)]
    results = run_reference(reference_binary, inputs)
    assert results[0][1] == 0x29B1
    for data, (encoded, crc) in zip(inputs, results):
        assert encoded == cobs.encode(data), f"COBS differs for {len(data)} bytes"
        assert crc == crc16(data)


def test_c_reference_reproduces_the_documented_vectors(reference_binary):
    from test_protocol import VECTOR_MESSAGES, VECTOR_WIRE

    heads = [encode_body(m)[:-2] for m in VECTOR_MESSAGES.values()]
    crcs = [crc for _, crc in run_reference(reference_binary, heads)]
    bodies = [head + struct.pack("<H", crc) for head, crc in zip(heads, crcs)]
    frames = [enc + b"\x00" for enc, _ in run_reference(reference_binary, bodies)]
    assert frames == [bytes.fromhex(VECTOR_WIRE[name]) for name in VECTOR_MESSAGES]


def run_decoder(binary: Path, frames):
    blob = b"".join(struct.pack("=I", len(x)) + x for x in frames)
    out = subprocess.run([str(binary), "dec"], input=blob, capture_output=True, check=True, timeout=60).stdout
    results, pos = [], 0
    for _ in frames:
        (m,) = struct.unpack_from("=i", out, pos)
        pos += 4
        body = out[pos:pos + max(m, 0)]
        pos += max(m, 0)
        (ok,) = struct.unpack_from("=i", out, pos)
        pos += 4
        results.append((None if m < 0 else body, bool(ok)))
    assert pos == len(out)
    return results


def test_c_decoder_agrees_with_the_python_decoder_on_good_and_damaged_frames(reference_binary):
    from test_protocol import VECTOR_WIRE

    from edge.protocol import decode_frame
    from edge.errors import BadFrame

    rng = random.Random(7)
    frames = [bytes.fromhex(h)[:-1] for h in VECTOR_WIRE.values()]  # without the delimiter
    for n in (0, 1, 253, 254, 255, 508, 509, 2000):
        frames.append(cobs.encode(bytes(rng.randrange(256) for _ in range(n))))
    damaged = []
    for frame in frames[:40]:
        for _ in range(20):
            f = bytearray(frame)
            if f:
                i = rng.randrange(len(f))
                op = rng.randrange(3)
                if op == 0:
                    f[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    del f[i:]
                else:
                    f[i] = rng.randrange(1, 256)
            damaged.append(bytes(f).replace(b"\x00", b"\x01"))  # a receiver never sees 0x00 inside
    frames += damaged
    results = run_decoder(reference_binary, frames)
    assert sum(ok for _, ok in results) >= len(VECTOR_WIRE)  # the vectors pass body_ok ...
    assert sum(body is None for body, _ in results) > 50  # ... and many damaged frames fail COBS
    for frame, (body, ok) in zip(frames, results):
        try:
            expected = cobs.decode(frame)
        except cobs.DecodeError:
            expected = None
        assert body == expected, frame.hex()
        try:
            decode_frame(frame)
            python_ok = True
        except BadFrame as exc:
            python_ok = exc.kind not in ("truncated", "bad_cobs", "bad_crc", "bad_version")
        assert ok == python_ok, frame.hex()
