"""A tiny stand-in trainer for the runner tests: it "trains" and writes real event files.

It reads the learning rate from the training config it is given (so a test can see that the
runner's edit reached the job), then for each step appends a TensorBoard event with ``auc`` and
``loss`` to ``<model_dir>/eval_val/events.out.tfevents.*`` (tensorboard's own record writer, no
TensorFlow) and prints ``step N auc=X``. The score is a known function of the learning rate.

    python fake_train.py --config pipeline.config --model_dir DIR [--steps 3] [--sleep 0.05]
                         [--lr 0.1] [--edit_config_json JSON] [--fail-at STEP]
                         [--first-step N]

``--first-step N`` starts at step N, as a trainer resumed from its checkpoint of step N-1 does.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

LR_FIELD = re.compile(r"learning_rate:\s*([0-9.eE+-]+)")


def auc_for(lr: float, step: int) -> float:
    """The "evaluation" result: better with more steps, best at lr = 0.01."""
    return round(0.5 + 0.05 * step - abs(lr - 0.01), 6)


def _event(step: int, **values: float) -> bytes:
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
    )
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--edit_config_json")
    parser.add_argument("--fail-at", type=int, default=0)
    parser.add_argument("--first-step", type=int, default=1)
    args = parser.parse_args()

    lr = args.lr
    if lr is None and args.edit_config_json:
        edits = json.loads(args.edit_config_json)
        lr = next(float(v) for k, v in edits.items() if k.endswith("learning_rate"))
    if lr is None:
        match = LR_FIELD.search(Path(args.config).read_text())
        lr = float(match.group(1))
    print(f"training with learning_rate={lr}", flush=True)

    eval_dir = Path(args.model_dir) / "eval_val"
    eval_dir.mkdir(parents=True, exist_ok=True)
    path = eval_dir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    with open(path, "ab") as handle:
        writer = RecordWriter(handle)
        writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
                     .SerializeToString())
        for step in range(args.first_step, args.steps + 1):
            time.sleep(args.sleep)
            if step == args.fail_at:
                print(f"step {step}: diverged", file=sys.stderr, flush=True)
                return 3
            auc = auc_for(lr, step)
            writer.write(_event(step * 100, auc=auc, loss=1.0 - auc))
            writer.flush()
            handle.flush()
            print(f"step {step} auc={auc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
