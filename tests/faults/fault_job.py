"""The local job of the fault tests: a scored step every ``--sleep`` s, ``--steps`` times.

    python fault_job.py --steps 600 --sleep 0.1

Each step prints ``step K auc=X`` (what the trial's ``stdout`` metric reads). It imports
nothing heavy, so that it starts at once; the tests look for it in /proc by the marker its
runner passed down in the environment (``HPO_TOOLS_FAULT_CASE``).
"""

from __future__ import annotations

import argparse
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--sleep", type=float, default=0.1)
    args = parser.parse_args()
    for step in range(1, args.steps + 1):
        print(f"step {step} auc={0.5 + 0.001 * step:.4f}", flush=True)
        time.sleep(args.sleep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
