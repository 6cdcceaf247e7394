#!/usr/bin/env python3
"""Sum a CubeCL kernel profile by kernel name: where a Burn GPU step spends its device time.

    CUBECL_DEBUG_LOG=/tmp/cubecl.log CUBECL_DEBUG_OPTION=profile sweep bench-train --device cuda:0 ...
    python3 bench/cubecl_profile.py /tmp/cubecl.log --steps N [--top 25]

CubeCL logs one `| <duration> | <kernel>` line per profiled kernel launch; this groups them by
name and prints the total per step, so it can be set against the step's wall time (the rest is
host-side overhead: op dispatch, fusion, launches).
"""
import argparse
import re
from collections import defaultdict

UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
LINE = re.compile(r"^\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.+)$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    total, count = defaultdict(float), defaultdict(int)
    with open(a.log, errors="replace") as f:
        for line in f:
            m = LINE.match(line.strip())
            if not m:
                continue
            name = re.sub(r"\s+", " ", m.group(3))[:110]
            total[name] += float(m.group(1)) * UNITS[m.group(2)]
            count[name] += 1
    grand = sum(total.values())
    launches = sum(count.values())
    print(f"{launches / a.steps:.0f} kernel launches and {1e3 * grand / a.steps:.1f} ms of kernel "
          f"time per step ({a.steps} steps, {len(total)} kernel names)")
    for name, t in sorted(total.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"{1e3 * t / a.steps:9.2f} ms {100 * t / grand:5.1f}% {count[name] / a.steps:7.0f}x  {name}")


if __name__ == "__main__":
    main()
