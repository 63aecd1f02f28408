"""Replay fixed learning curves through PAIAssessor, NNI's Medianstop and NNI's Curvefitting.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_assessor.py            # replay benchmarks/data/*.json
    .venv/bin/python benchmarks/bench_assessor.py --generate # rewrite the data (fixed seeds)

Each data set holds 100 learning curves of ``steps`` intermediate results, in arrival order. The
replay simulates NNI's dispatcher with ``trialConcurrency: 2``: two trials run at once, each
reports one value per tick (the two running trials' reports interleave), ``assess_trial`` is
called after every report with the trial's whole history, a ``Bad`` answer stops the trial at
once (its remaining steps are saved) and frees its slot for the next trial, and ``trial_end`` is
called when a trial finishes (success=True) or is stopped (success=False).

Reported per set and assessor: the fraction of training steps saved, whether the trial with the
best final value ran to the end ("kept"), and the rank (1 = best of 100) of the best trial that
was kept. Curvefitting supports maximize only, so it is skipped on minimize sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
TRIALS = 100
STEPS = 30

_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------


def _saturating(start: float, end: float, tau: float, steps: int, noise: float,
                rng: random.Random) -> list[float]:
    """``start + (end - start) * (1 - exp(-t / tau))`` for t = 1..steps, plus Gaussian noise."""
    return [round(start + (end - start) * (1 - math.exp(-t / tau)) + rng.gauss(0, noise), 6)
            for t in range(1, steps + 1)]


def _make_set(name: str, seed: int, *, mode: str, slow_fraction: float, noise: float,
              description: str) -> dict[str, Any]:
    """100 curves; a ``slow_fraction`` of them start slowly (large tau) and reach the best ends.

    Maximize sets look like AUC (0.5 rising to 0.62..0.80; slow starters to 0.84..0.88, tau 6..10);
    the minimize set looks like log loss (0.69 falling to 0.40..0.55; slow starters to 0.34..0.38).
    """
    rng = random.Random(seed)
    n_slow = round(TRIALS * slow_fraction)
    curves = []
    for i in range(TRIALS):
        slow = i < n_slow
        if mode == "maximize":
            start = 0.5
            end = rng.uniform(0.84, 0.88) if slow else rng.uniform(0.62, 0.80)
        else:
            start = 0.69
            end = rng.uniform(0.34, 0.38) if slow else rng.uniform(0.40, 0.55)
        tau = rng.uniform(6.0, 10.0) if slow else rng.uniform(1.5, 6.0)
        curves.append({"slow": slow, "curve": _saturating(start, end, tau, STEPS, noise, rng)})
    rng.shuffle(curves)  # arrival order
    return {"name": name, "seed": seed, "optimize_mode": mode, "steps": STEPS,
            "description": description, "slow": [c["slow"] for c in curves],
            "curves": [c["curve"] for c in curves]}


_SEEDS = {"saturating": 101, "slow_start": 202, "slow_start_noisy": 303, "loss_slow_start": 404}
_SPECS: dict[str, dict[str, Any]] = {
    "saturating": dict(mode="maximize", slow_fraction=0.0, noise=0.002,
                       description="plain saturating AUC-like curves, small noise"),
    "slow_start": dict(mode="maximize", slow_fraction=0.25, noise=0.002,
                       description="a quarter start slowly and finish best"),
    "slow_start_noisy": dict(mode="maximize", slow_fraction=0.25, noise=0.01,
                             description="as slow_start with 5x the noise"),
    "loss_slow_start": dict(mode="minimize", slow_fraction=0.25, noise=0.002,
                            description="log-loss-like (minimize); a quarter start slowly and "
                                        "finish best"),
}
DATA_SETS: dict[str, Callable[[], dict[str, Any]]] = {
    name: (lambda name=name: _make_set(name, _SEEDS[name], **_SPECS[name])) for name in _SPECS
}


def make_with_offset(name: str, offset: int) -> dict[str, Any]:
    """Data set ``name`` generated with its seed + ``offset`` (not stored)."""
    fresh = _make_set(name, _SEEDS[name] + offset, **_SPECS[name])
    fresh["name"] = f"{name}+{offset}"
    return fresh


def generate(data_dir: Path) -> None:
    """Write every data set to ``data_dir/<name>.json``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, make in DATA_SETS.items():
        path = data_dir / f"{name}.json"
        path.write_text(json.dumps(make(), indent=None) + "\n", encoding="utf-8")
        print(f"wrote {path}")


# ------------------------------------------------------------------------------------------------
# Replay
# ------------------------------------------------------------------------------------------------


def replay(assessor: Any, curves: list[list[float]], concurrency: int = 2) -> list[int]:
    """Run ``curves`` through ``assessor`` like NNI's dispatcher; return each trial's steps run."""
    from nni.assessor import AssessResult

    ran = [0] * len(curves)
    waiting = list(range(len(curves)))
    running: list[int] = []
    while waiting or running:
        while waiting and len(running) < concurrency:
            running.append(waiting.pop(0))
        for idx in list(running):
            trial_id = f"T{idx:03d}"
            ran[idx] += 1
            result = assessor.assess_trial(trial_id, curves[idx][: ran[idx]])
            if result is AssessResult.Bad or result is False:
                running.remove(idx)
                assessor.trial_end(trial_id, False)
            elif ran[idx] == len(curves[idx]):
                running.remove(idx)
                assessor.trial_end(trial_id, True)
    return ran


def score(curves: list[list[float]], ran: list[int], mode: str) -> dict[str, Any]:
    """Steps saved, whether the best trial was kept, and the rank of the best kept trial."""
    total = sum(len(c) for c in curves)
    sign = 1.0 if mode == "maximize" else -1.0
    order = sorted(range(len(curves)), key=lambda i: -sign * curves[i][-1])
    kept = [i for i in order if ran[i] == len(curves[i])]
    return {
        "saved": 1.0 - sum(ran) / total,
        "best_kept": bool(kept) and kept[0] == order[0],
        "best_kept_rank": order.index(kept[0]) + 1 if kept else None,
        "stopped": sum(1 for i, c in enumerate(curves) if ran[i] < len(c)),
    }


def assessors_for(data: dict[str, Any],
                  variants: list[dict[str, Any]] | None = None) -> dict[str, Callable[[], Any]]:
    """Fresh assessors to compare on ``data``: ours with defaults (and ``variants`` of its
    classArgs), and NNI's peers."""
    from nni.algorithms.hpo.curvefitting_assessor import CurvefittingAssessor
    from nni.algorithms.hpo.medianstop_assessor import MedianstopAssessor

    from hpo_tools.assessor import PAIAssessor

    mode = data["optimize_mode"]
    makers: dict[str, Callable[[], Any]] = {
        "PAIAssessor (defaults)": lambda: PAIAssessor(optimize_mode=mode),
        "Medianstop (start_step 2)": lambda: MedianstopAssessor(optimize_mode=mode, start_step=2),
    }
    for variant in variants or []:
        label = "PAIAssessor " + json.dumps(variant, sort_keys=True)
        makers[label] = lambda v=variant: PAIAssessor(optimize_mode=mode, **v)
    if mode == "maximize":
        makers["Curvefitting (defaults)"] = lambda: CurvefittingAssessor(
            epoch_num=data["steps"])
    return makers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generate", action="store_true", help="rewrite benchmarks/data/")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--only", nargs="*", help="assessor name prefixes to run")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="replay freshly generated sets with every seed + N (robustness "
                             "check) instead of the stored data")
    parser.add_argument("--pai-args", action="append", default=[], metavar="JSON",
                        help="also run PAIAssessor with these classArgs (repeatable), "
                             'e.g. \'{"start_step": 8}\'')
    args = parser.parse_args(argv)
    if args.generate:
        generate(args.data_dir)
        return 0
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    totals: dict[str, list[dict[str, Any]]] = {}
    print("| set | assessor | steps saved | best kept | rank of best kept | stopped | seconds |")
    print("|---|---|---|---|---|---|---|")
    if args.seed_offset:
        data_sets = [make_with_offset(name, args.seed_offset) for name in sorted(DATA_SETS)]
    else:
        data_sets = [json.loads(path.read_text(encoding="utf-8"))
                     for path in sorted(args.data_dir.glob("*.json"))]
    for data in data_sets:
        variants = [json.loads(text) for text in args.pai_args]
        for name, make in assessors_for(data, variants).items():
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            started = time.perf_counter()
            ran = replay(make(), data["curves"])
            seconds = time.perf_counter() - started
            result = score(data["curves"], ran, data["optimize_mode"])
            totals.setdefault(name, []).append(result)
            print(f"| {data['name']} | {name} | {result['saved']:.1%} | "
                  f"{'yes' if result['best_kept'] else 'NO'} | {result['best_kept_rank']} | "
                  f"{result['stopped']} | {seconds:.2f} |")
    print()
    print("| assessor | sets | mean steps saved | best kept in |")
    print("|---|---|---|---|")
    for name, results in totals.items():
        mean = sum(r["saved"] for r in results) / len(results)
        kept = sum(1 for r in results if r["best_kept"])
        print(f"| {name} | {len(results)} | {mean:.1%} | {kept}/{len(results)} sets |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
