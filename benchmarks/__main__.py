"""Run every benchmark module (``bench_*.py``) and write results.json.

Each module defines ``main() -> None`` which records its figures through
:func:`benchmarks.harness.record`. ``python -m benchmarks NAME`` runs one.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    """Run the selected (default: all) benchmark modules."""
    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except Exception as exc:  # keep going; report at the end
            failed += 1
            print(f"benchmarks: error: {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"   {name} took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(f"results in {here / 'results.json'} and {here / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
