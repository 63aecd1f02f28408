"""The local job of the fault tests: a scored step every ``--sleep`` s, ``--steps`` times.

    python fault_job.py [--steps 600] [--sleep 0.1] [--fail-at K] [--hang-after K]
                        [--events DIR]

It starts a silent worker process of its own first (as a data loader does): a job's cancel
must stop its whole process group, and a worker that writes nothing does not die of a broken
pipe when the runner is gone. Each step prints ``step K auc=X`` (what the trial's ``stdout``
metric reads). ``--fail-at K``
exits 3 at step K (a crash after K-1 good steps); ``--hang-after K`` stops printing after step K
and sleeps a minute (a hung job); ``--events DIR`` also writes each step to a TensorBoard event
file in DIR and, at the end, two records whose data CRC is wrong and the first bytes of one
more (the file a job that died mid-write leaves). Without ``--events`` it imports nothing
heavy, so that it starts at once; the tests find it in /proc by the marker its runner passed
down in the environment (``HPO_TOOLS_FAULT_CASE``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def _auc(step: int) -> float:
    return round(0.5 + 0.001 * step, 4)


def _damage(handle, step: int) -> None:  # type: ignore[no-untyped-def]
    from tests.metrics.eventlib import record, scalar_event

    for bad in (step + 1, step + 2):
        data = bytearray(record(scalar_event(bad * 100, auc=0.99)))
        data[20] ^= 0xFF  # a payload byte: the data CRC no longer matches
        handle.write(bytes(data))
    handle.write(record(scalar_event((step + 3) * 100, auc=0.5))[:-7])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--fail-at", type=int, default=0)
    parser.add_argument("--hang-after", type=int, default=0)
    parser.add_argument("--events")
    args = parser.parse_args()
    # Not waited for: when the job ends, its shell (the Local platform's) ends the group.
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    events = None
    if args.events:
        from tests.metrics.eventlib import record, scalar_event, version_event

        Path(args.events).mkdir(parents=True, exist_ok=True)
        events = open(Path(args.events) / "events.out.tfevents.1700000000.host", "ab")
        events.write(record(version_event()))
    for step in range(1, args.steps + 1):
        if step == args.fail_at:
            print(f"step {step}: diverged", file=sys.stderr, flush=True)
            return 3
        print(f"step {step} auc={_auc(step)}", flush=True)
        if events is not None:
            events.write(record(scalar_event(step * 100, auc=_auc(step))))
            events.flush()
        if step == args.hang_after:
            time.sleep(60)
        time.sleep(args.sleep)
    if events is not None:
        _damage(events, args.steps)
        events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
