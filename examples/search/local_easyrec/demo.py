"""The `make demo` script: tune the local example headless and compare with the untuned config.

1. trains the untuned base config once (``hpo-tools run --params '{}'``: the same trial file,
   trainer, data and scoring as every trial, with no parameter applied);
2. runs the experiment ``begin/config.yml`` headless (``hpo-tools experiment run``), which prints
   its progress and summary and exports the best trial;
3. prints the best trial's score next to the untuned one.

Run from anywhere, after ``hpo-tools make-data demo-data`` at the repository root::

    python examples/search/local_easyrec/demo.py [--work-dir demo-exp] [--timeout 900]

Exit code: 0 when the tuned config beats the untuned one, 1 otherwise (or when a step failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BEGIN = HERE / "begin"
REPO = HERE.parents[2]


def _hpo_tools(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``hpo-tools ARGS`` with this interpreter, output streamed to the terminal."""
    from hpo_tools.experiment import path_with_interpreter_first

    command = [sys.executable, "-m", "hpo_tools", *args]
    print(f"$ (cd {cwd} && hpo-tools {' '.join(args)})", flush=True)
    # `python -m hpo_tools.trainer` in trial.ini must find this interpreter, venv or not.
    env = dict(os.environ, PATH=path_with_interpreter_first(os.environ.get("PATH", ""),
                                                            sys.executable))
    return subprocess.run(command, cwd=cwd, env=env, text=True, check=False)


def _final(result_path: Path) -> dict[str, Any]:
    doc = json.loads(result_path.read_text(encoding="utf-8"))
    if doc.get("status") != "succeeded" or not doc.get("final"):
        raise SystemExit(f"demo: {result_path}: the run did not succeed ({doc.get('status')})")
    return doc["final"]


def _line(name: str, report: dict[str, Any]) -> str:
    values = " ".join(f"{k}={v:.4f}" for k, v in sorted(report.get("values", {}).items()))
    return f"{name:<22} score={report['score']:.4f}  {values}"


DEMO_OUTPUT = frozenset({"baseline", "nni"})
"""What the demo writes in its work directory; nothing else there is ever deleted."""


def _fresh_work_dir(work: Path) -> str | None:
    """Empty ``work`` for a new run, or say why not (it holds files the demo did not write)."""
    if work.exists():
        foreign = (sorted(p.name for p in work.iterdir() if p.name not in DEMO_OUTPUT)
                   if work.is_dir() else [work.name])
        if foreign:
            return (f"demo: {work} holds files the demo did not write ({', '.join(foreign[:3])})"
                    "; pass an empty or new --work-dir")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=str(REPO / "demo-exp"),
                        help="where the baseline and the experiment write (default: demo-exp)")
    parser.add_argument("--timeout", default="900", help="experiment timeout in seconds")
    args = parser.parse_args(argv)

    work = Path(args.work_dir).resolve()
    if not (REPO / "demo-data" / "train.csv").is_file():
        print("demo: run `hpo-tools make-data demo-data` at the repository root first",
              file=sys.stderr)
        return 1
    problem = _fresh_work_dir(work)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    started = time.monotonic()

    print("== 1/2: the untuned base config (pipeline.config as it is)", flush=True)
    baseline = _hpo_tools("run", "--config", "trial.ini", "--params", "{}",
                          "--exp_dir", str(work / "baseline"), "--trial-id", "untuned",
                          cwd=BEGIN)
    if baseline.returncode != 0:
        print(f"demo: the untuned run failed (exit {baseline.returncode})", file=sys.stderr)
        return 1
    untuned = _final(work / "baseline" / "standalone" / "trials" / "untuned" / "result.json")

    print("\n== 2/2: the experiment (TPE, 8 trials, 2 at a time, PAIAssessor)", flush=True)
    run = _hpo_tools("experiment", "run", str(BEGIN / "config.yml"), "--working-dir",
                     str(work / "nni"), "--timeout", args.timeout, cwd=REPO)
    if run.returncode != 0:
        print(f"demo: the experiment ended with exit {run.returncode}", file=sys.stderr)
        return 1
    # NNI also links the latest experiment as `_latest`; take the real directory.
    best_files = [p for p in sorted((work / "nni").glob("*/best/best_trial.json"))
                  if not p.parents[1].is_symlink()]
    if not best_files:
        print("demo: no best trial was exported", file=sys.stderr)
        return 1
    best_trial = json.loads(best_files[-1].read_text(encoding="utf-8"))
    best = best_trial["final"]

    elapsed = time.monotonic() - started
    gain = best["score"] - untuned["score"]
    print("\n== result", flush=True)
    print(_line("untuned pipeline.config", untuned))
    print(_line(f"best (trial {best_trial['trial_id']})", best))
    print(f"{'gain':<22} {gain:+.4f} ({'better' if gain > 0 else 'NOT better'}); "
          f"baseline + experiment took {elapsed:.0f} s")
    print(f"best config: {best_files[-1].parent / 'pipeline.config'}")
    return 0 if gain > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
