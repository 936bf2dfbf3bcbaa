from __future__ import annotations

import importlib
import sys
import time

SUITES = ["startup", "gateway", "scheduler", "sandbox", "e2e", "inference", "chat"]


def main(argv: list[str]) -> int:
    names = argv or SUITES
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        print(f"\n== {name}: {mod.__doc__.strip().splitlines()[0]}", flush=True)
        t0 = time.perf_counter()
        mod.run()
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
