"""Search efficiency: which tuner finds a good DBMTL config for the fewest trainer steps.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_search.py collect         # real trainer runs -> jsonl
    .venv/bin/python benchmarks/bench_search.py validate        # the surrogate's held-out error
    .venv/bin/python benchmarks/bench_search.py run --seeds 10  # tuners on the surrogate
    .venv/bin/python benchmarks/bench_search.py plot            # tables + plots from run's trials

``run`` and ``plot`` need matplotlib; Anneal needs hyperopt, BOHB ConfigSpace, CFO and
BlendSearch flaml (and optuna): a method whose package or wrapper is missing, or that fails on
the search space, is reported as missing with the reason, never left out silently. Results:
docs/benchmarks.md ("Search efficiency").

``collect`` trains the local example's DBMTL model (``examples/search/local_easyrec/begin/``:
its ``pipeline.config`` and ``search_space.json``) with hpo-tools' own trainer
(``hpo_tools.trainer.train_and_evaluate``, in this process so TensorFlow is imported once) on a
small synthetic data set, so that one run takes a few seconds: ``make-data``'s generator with 5
days x 6,000 rows (4 train days, 1 eval day), hash buckets 10x smaller, 135 steps of 512 rows
(2.9 epochs) evaluated every 15 steps (9 scores per run). Each run's parameters are applied to
the config with hpo-tools' config editor, exactly as a trial does. The score is the example's:
``0.5 * auc_ctr + 0.5 * auc_cvr``. Runs (a fixed list, seeded):

* the untuned config, trainer seeds 0..4 (the baseline, and its spread);
* NNI's GridSearch: its first 27 points (every choice, continuous values at their midpoint) and
  18 of the next 216 (seeded pick);
* 150 points of NNI's RandomTuner (seed 12345), trainer seed 0; the first 10 of them also with
  trainer seeds 1 and 2 (the noise between seeds).

Each run is one JSON line in ``benchmarks/data/search_runs.jsonl``; ``collect`` resumes where a
previous one stopped.

``run`` drives NNI's tuner classes in this process as NNI's dispatcher calls them
(``update_search_space``, ``generate_parameters``, ``receive_trial_result``, ``trial_end``; an
advisor's ``handle_*`` methods; an assessor's ``assess_trial`` after each intermediate result),
one trial at a time, against a surrogate fitted to the collected runs (see :class:`Surrogate`),
and reports the best score reached against trials and against cost (trainer steps).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "search" / "local_easyrec" / "begin"
DATA_DIR = Path(__file__).resolve().parent / "data"
RUNS_FILE = DATA_DIR / "search_runs.jsonl"

#: The data set: make-data's generator, small.
DATA_DAYS = 5
DATA_ROWS_PER_DAY = 6000
DATA_SEED = 0
#: Steps of one full run, and how often it is evaluated (a Hyperband budget unit).
FULL_STEPS = 135
EVAL_EVERY = 15
#: Edits that make the example's config quick on the small data set (applied before a run's own).
BENCH_EDITS: dict[str, object] = {
    "feature_configs[hash_bucket_size>=50000].hash_bucket_size": 5000,
    "feature_configs[hash_bucket_size=10000].hash_bucket_size": 1000,
    "data_config.num_epochs": 0,
    "train_config.num_steps": FULL_STEPS,
    "train_config.save_checkpoints_steps": EVAL_EVERY,
}
#: The example's score: metric_dict in trial.ini.
METRIC_WEIGHTS = {"auc_ctr": 0.5, "auc_cvr": 0.5}

RANDOM_SEED = 12345
RANDOM_POINTS = 150
REPLICATED_POINTS = 10
REPLICATE_SEEDS = (1, 2)
UNTUNED_SEEDS = (0, 1, 2, 3, 4)
GRID_FIRST = 27
GRID_EXTRA = 18
GRID_PICK_SEED = 7

_logger = logging.getLogger("bench_search")


def load_search_space() -> dict[str, Any]:
    """The example's search space (key order = the order edits are applied in)."""
    return json.loads((EXAMPLE / "search_space.json").read_text())


# ------------------------------------------------------------------------------------------------
# collect: real trainer runs
# ------------------------------------------------------------------------------------------------


def grid_points(space: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The first ``count`` points NNI's GridSearchTuner proposes for ``space``."""
    from nni.algorithms.hpo.gridsearch_tuner import GridSearchTuner

    tuner = GridSearchTuner()
    tuner.update_search_space(space)
    return [_plain(tuner.generate_parameters(i)) for i in range(count)]


def random_points(space: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` points of NNI's RandomTuner with ``seed``."""
    from nni.algorithms.hpo.random_tuner import RandomTuner

    tuner = RandomTuner(seed=seed)
    tuner.update_search_space(space)
    return [_plain(tuner.generate_parameters(i)) for i in range(count)]


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-native values (NNI may hand out numpy scalars)."""
    return json.loads(json.dumps(params, default=lambda v: v.item()))


def planned_runs(space: dict[str, Any]) -> list[dict[str, Any]]:
    """The fixed list of runs ``collect`` makes, in order: ``{"id", "kind", "params", "seed"}``."""
    runs: list[dict[str, Any]] = []
    for seed in UNTUNED_SEEDS:
        runs.append({"id": f"untuned-s{seed}", "kind": "untuned", "params": {}, "seed": seed})
    rnd = random_points(space, RANDOM_POINTS, RANDOM_SEED)
    for i, params in enumerate(rnd[:REPLICATED_POINTS]):
        runs.append({"id": f"random-{i:03d}", "kind": "random", "params": params, "seed": 0})
    for seed in REPLICATE_SEEDS:
        for i, params in enumerate(rnd[:REPLICATED_POINTS]):
            runs.append({"id": f"random-{i:03d}-s{seed}", "kind": "replicate", "params": params,
                         "seed": seed})
    grid = grid_points(space, 243)
    extra = sorted(random.Random(GRID_PICK_SEED).sample(range(GRID_FIRST, len(grid)), GRID_EXTRA))
    for i in list(range(GRID_FIRST)) + extra:
        runs.append({"id": f"grid-{i:03d}", "kind": "grid", "params": grid[i], "seed": 0})
    for i, params in enumerate(rnd[REPLICATED_POINTS:], start=REPLICATED_POINTS):
        runs.append({"id": f"random-{i:03d}", "kind": "random", "params": params, "seed": 0})
    return runs


def run_config_text(base_text: str, params: dict[str, Any]) -> str:
    """The example's config with :data:`BENCH_EDITS`, then ``params``, applied (as a trial does)."""
    from hpo_tools.pbtxt import Document

    doc = Document.parse(base_text, source="pipeline.config")
    doc.apply(BENCH_EDITS)
    doc.apply(params)
    return doc.to_text()


def score_of(evaluation: dict[str, float]) -> float:
    """The example's weighted score of one evaluation."""
    return sum(w * evaluation[k] for k, w in METRIC_WEIGHTS.items())


def train_once(text: str, data_dir: Path, seed: int) -> dict[str, Any]:
    """Train one config text; its per-evaluation scores and wall time."""
    from hpo_tools.pbtxt import Document
    from hpo_tools.trainer.config import settings_from_document
    from hpo_tools.trainer.train import train_and_evaluate

    settings = settings_from_document(Document.parse(text, source="pipeline.config"))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_search_") as model_dir:
        result = train_and_evaluate(settings, model_dir=model_dir,
                                    train_input_path=str(data_dir / "train.csv"),
                                    eval_input_path=str(data_dir / "eval.csv"), seed=seed)
    seconds = time.monotonic() - began
    evals = result.evaluations
    return {
        "steps": [int(e["step"]) for e in evals],
        "scores": [round(score_of(e), 6) for e in evals],
        "auc_ctr": [round(e["auc_ctr"], 6) for e in evals],
        "auc_cvr": [round(e["auc_cvr"], 6) for e in evals],
        "final_score": round(score_of(evals[-1]), 6),
        "final_step": result.final_step,
        "seconds": round(seconds, 3),
    }


def read_runs(path: Path = RUNS_FILE) -> list[dict[str, Any]]:
    """The runs recorded so far (a cut-off last line is ignored)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return runs


def collect(work_dir: Path, limit: int | None) -> int:
    """Make the planned runs not yet in :data:`RUNS_FILE`, appending one line per run."""
    import gc

    from hpo_tools.trainer.data import write_dataset

    data_dir = work_dir / "data"
    if not (data_dir / "eval.csv").exists():
        write_dataset(data_dir, days=DATA_DAYS, rows_per_day=DATA_ROWS_PER_DAY, seed=DATA_SEED)
    base_text = (EXAMPLE / "pipeline.config").read_text()
    done = {r["id"] for r in read_runs()}
    todo = [r for r in planned_runs(load_search_space()) if r["id"] not in done]
    if limit is not None:
        todo = todo[:limit]
    _logger.info("collect: %d runs done, %d to do; data %s", len(done), len(todo), data_dir)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    for n, run in enumerate(todo, start=1):
        record = dict(run, **train_once(run_config_text(base_text, run["params"]), data_dir,
                                        run["seed"]))
        with RUNS_FILE.open("a") as out:
            out.write(json.dumps(record) + "\n")
        gc.collect()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        _logger.info("[%d/%d] %s score %.4f (%.1f s; %.0f s so far; peak RSS %.0f MB)", n,
                     len(todo), run["id"], record["final_score"], record["seconds"],
                     time.monotonic() - began, rss_mb)
    return 0


# ------------------------------------------------------------------------------------------------
# the surrogate
# ------------------------------------------------------------------------------------------------


def encode(space: dict[str, Any], params: dict[str, Any]) -> list[float]:
    """``params`` as a point of [0, 1]^d: a choice by its index, log scale for log types."""

    x = []
    for key, spec in space.items():
        kind, values = spec["_type"], spec["_value"]
        value = params[key]
        if kind == "choice":
            texts = [json.dumps(v) for v in values]
            text = json.dumps(_plain({"v": value})["v"])
            if text in texts:
                index = texts.index(text)
            else:  # a number a tuner rounded differently: the nearest choice
                index = min(range(len(values)), key=lambda i: abs(float(values[i]) - float(value)))
            x.append(index / max(len(values) - 1, 1))
        elif kind in ("loguniform", "qloguniform"):
            lo, hi = math.log(values[0]), math.log(values[1])
            x.append((math.log(float(value)) - lo) / (hi - lo))
        else:
            lo, hi = float(values[0]), float(values[1])
            x.append((float(value) - lo) / (hi - lo))
    return x


class Surrogate:
    """Gaussian-process regression of a run's score curve on its encoded parameters (numpy only).

    The mean is a GP posterior mean per evaluation step: one squared-exponential kernel with a
    lengthscale per parameter (chosen by leave-one-out error, closed form) over the runs'
    standardised scores, and a noise variance fixed to the spread between trainer seeds.

    What a simulated trial observes is that mean plus noise built from the real runs' own
    spread between trainer seeds (10 replicated points x seeds 0, 1, 2; the untuned config x
    seeds 0..4). The spread differs a lot between points (sd 0.0003 to 0.012 at the last step,
    0.006 to 0.07 at the first), so its size per step is predicted at the trial's point: the
    geometric mean of the replicated points' sd, weighted by the kernel (Nadaraya-Watson with the
    GP's lengthscales). Its shape across steps is one real noise curve divided by its group's sd
    per step (the 35 of them), picked by a hash of (benchmark seed, parameters): the same
    parameters in the same seed give the same curve, as the seeded trainer does, so a config
    Hyperband promotes re-traces its curve.
    """

    LENGTHSCALES = (0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5, 2.5, 5.0, 10.0)
    SIGNALS = (0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, space: dict[str, Any], runs: list[dict[str, Any]]) -> None:
        import numpy as np

        self.space = space
        self.steps = runs[0]["steps"]
        train = [r for r in runs if r["kind"] != "untuned" and r["steps"] == self.steps]
        self.x = np.array([encode(space, r["params"]) for r in train])
        y = np.array([r["scores"] for r in train])
        self.mean, self.scale = y.mean(axis=0), y.std(axis=0)
        self.z = (y - self.mean) / self.scale
        self.noise_curves = noise_curves(runs)
        groups = noise_groups(runs)
        self.noise_x = np.array([encode(space, params) for params, _ in groups if params])
        self.noise_log_sd = np.array([np.log(curves.std(axis=0)) for params, curves in groups
                                      if params])
        self.noise_shapes = np.concatenate([curves / curves.std(axis=0) for _, curves in groups])
        noise_var = (self.noise_curves.std(axis=0) / self.scale) ** 2
        self.noise = float(noise_var.mean())
        self.lengthscales = np.full(self.x.shape[1], 0.5)
        self.signal = 1.0
        self._fit()

    def _kernel(self, a: Any, b: Any) -> Any:
        import numpy as np

        d = (a[:, None, :] - b[None, :, :]) / self.lengthscales
        return self.signal * np.exp(-0.5 * (d ** 2).sum(axis=2))

    def _loo_error(self) -> float:
        import numpy as np

        k = self._kernel(self.x, self.x) + self.noise * np.eye(len(self.x))
        inv = np.linalg.inv(k)
        resid = (inv @ self.z) / np.diag(inv)[:, None]
        return float((resid ** 2).mean())

    def _fit(self) -> None:
        import numpy as np

        best = self._loo_error()
        for _ in range(3):
            for d in range(len(self.lengthscales)):
                for value in self.LENGTHSCALES:
                    old = self.lengthscales[d]
                    self.lengthscales[d] = value
                    err = self._loo_error()
                    if err < best - 1e-12:
                        best = err
                    else:
                        self.lengthscales[d] = old
            for value in self.SIGNALS:
                old_signal = self.signal
                self.signal = value
                err = self._loo_error()
                if err < best - 1e-12:
                    best = err
                else:
                    self.signal = old_signal
        k = self._kernel(self.x, self.x) + self.noise * np.eye(len(self.x))
        self.alpha = np.linalg.solve(k, self.z)
        self.loo_rmse_std = best ** 0.5

    def mean_curve(self, params: dict[str, Any]) -> list[float]:
        """The GP's mean score at each evaluation step (no noise)."""
        import numpy as np

        x = np.array([encode(self.space, params)])
        z = self._kernel(x, self.x) @ self.alpha
        return [float(v) for v in (z[0] * self.scale + self.mean)]

    def curve(self, params: dict[str, Any], seed: int) -> list[float]:
        """What a trial with ``params`` reports in seed ``seed``: mean + a real noise curve."""
        import hashlib

        import numpy as np

        x = np.array(encode(self.space, params))
        weights = np.exp(-0.5 * (((self.noise_x - x) / self.lengthscales) ** 2).sum(axis=1))
        sd = np.exp(weights @ self.noise_log_sd / weights.sum())
        key = json.dumps([seed, _plain(params)], sort_keys=True).encode()
        pick = int(hashlib.sha256(key).hexdigest(), 16) % len(self.noise_shapes)
        return [float(v) for v in np.array(self.mean_curve(params)) + sd * self.noise_shapes[pick]]


def noise_groups(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    """``(params, noise curves)`` of each replicated point (the untuned config's params: {}).

    A noise curve is a run's score curve minus its group's mean curve, scaled by
    sqrt(n / (n - 1)) so that its spread estimates one run's.
    """
    import numpy as np

    ids = {r["id"] for r in runs}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["kind"] in ("untuned", "replicate") or r["id"] + "-s1" in ids:
            groups.setdefault(json.dumps(r["params"], sort_keys=True), []).append(r)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        y = np.array([r["scores"] for r in members])
        out.append((members[0]["params"],
                    (y - y.mean(axis=0)) * (len(y) / (len(y) - 1)) ** 0.5))
    return out


def noise_curves(runs: list[dict[str, Any]]) -> Any:
    """All noise curves of :func:`noise_groups`, one array."""
    import numpy as np

    return np.concatenate([curves for _, curves in noise_groups(runs)])


def validate(runs: list[dict[str, Any]], folds: int = 5) -> dict[str, Any]:
    """Held-out error of the surrogate: k-fold over the seed-0 points (replicates kept together)."""
    import numpy as np

    space = load_search_space()
    points = [r for r in runs if r["kind"] in ("random", "grid")]
    order = list(range(len(points)))
    random.Random(0).shuffle(order)
    predicted = np.zeros((len(points), len(points[0]["scores"])))
    for f in range(folds):
        held = {points[i]["id"] for i in order[f::folds]}
        train = [r for r in runs
                 if r["id"] not in held and r["id"].rsplit("-s", 1)[0] not in held]
        model = Surrogate(space, train)
        for i, r in enumerate(points):
            if r["id"] in held:
                predicted[i] = model.mean_curve(r["params"])
    observed = np.array([r["scores"] for r in points])
    final_obs, final_pred = observed[:, -1], predicted[:, -1]
    # Posterior-predictive check: the full surrogate (all runs) simulating the same points with
    # noise, 10 seeds; its spread and upper tail per step next to the real runs'.
    model = Surrogate(space, runs)
    sims = np.array([[model.curve(r["params"], seed) for r in points] for seed in range(10)])
    noise = noise_curves(runs)
    return {
        "points": len(points),
        "folds": folds,
        "rmse_final": float(np.sqrt(((final_pred - final_obs) ** 2).mean())),
        "mae_final": float(np.abs(final_pred - final_obs).mean()),
        "rmse_final_constant": float(final_obs.std()),
        "rmse_all_steps": float(np.sqrt(((predicted - observed) ** 2).mean())),
        "steps": points[0]["steps"],
        "rmse_by_step": np.round(np.sqrt(((predicted - observed) ** 2).mean(axis=0)), 4).tolist(),
        "rmse_constant_by_step": np.round(observed.std(axis=0), 4).tolist(),
        "seed_noise_sd_by_step": np.round(noise.std(axis=0), 4).tolist(),
        "spearman_by_step": [round(_spearman(predicted[:, k], observed[:, k]), 3)
                             for k in range(observed.shape[1])],
        "spearman_final": _spearman(final_pred, final_obs),
        "real_max_by_step": np.round(observed.max(axis=0), 4).tolist(),
        "simulated_max_by_step": np.round(np.median(sims.max(axis=1), axis=0), 4).tolist(),
        "real_q95_by_step": np.round(np.percentile(observed, 95, axis=0), 4).tolist(),
        "simulated_q95_by_step": np.round(np.median(np.percentile(sims, 95, axis=1), axis=0),
                                          4).tolist(),
        "real_sd_by_step": np.round(observed.std(axis=0), 4).tolist(),
        "simulated_sd_by_step": np.round(np.median(sims.std(axis=1), axis=0), 4).tolist(),
        "seed_noise_sd_final": float(noise[:, -1].std()),
        "noise_curves": len(noise),
        "observed_final_range": [float(final_obs.min()), float(final_obs.max())],
    }


def _spearman(a: Any, b: Any) -> float:
    import numpy as np

    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# ------------------------------------------------------------------------------------------------
# the tuners, by name
# ------------------------------------------------------------------------------------------------


class MethodUnavailable(Exception):
    """A method's tuner cannot be built here (its package or wrapper is missing)."""


def _import(dotted: str) -> Any:
    import importlib

    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise MethodUnavailable(f"{dotted}: {type(err).__name__}: {err}") from None


def _first(*dotted: str) -> Any:
    """The first of ``dotted`` that imports; MethodUnavailable naming all when none does.

    The class gets ``bench_name`` (its dotted name), reported with the method's results.
    """
    reasons = []
    for name in dotted:
        try:
            cls = _import(name)
            cls.bench_name = name
            return cls
        except MethodUnavailable as err:
            reasons.append(str(err))
    raise MethodUnavailable("; ".join(reasons))


def _tpe(seed: int) -> dict[str, Any]:
    # NNI's TPE itself: SafeTpeTuner (what the example configures) is TPE plus parameter-id
    # guards that need an experiment's trial records; trials here run one at a time, in order.
    cls = _first("nni.algorithms.hpo.tpe_tuner.TpeTuner")
    return {"tuner": cls(optimize_mode="maximize", seed=seed)}


def _tpe_assessor(seed: int, start_step: int = 3) -> dict[str, Any]:
    assessor = _first("hpo_tools.assessor.PAIAssessor")
    return dict(_tpe(seed), assessor=assessor(optimize_mode="maximize", start_step=start_step))


def _random(seed: int) -> dict[str, Any]:
    return {"tuner": _first("nni.algorithms.hpo.random_tuner.RandomTuner")(seed=seed)}


def _grid(seed: int) -> dict[str, Any]:
    return {"tuner": _first("nni.algorithms.hpo.gridsearch_tuner.GridSearchTuner")()}


def _anneal(seed: int) -> dict[str, Any]:
    cls = _first("hpo_tools.tuners.SafeAnnealTuner", "hpo_tools.tuners.AnnealTuner",
                 "nni.algorithms.hpo.hyperopt_tuner.HyperoptTuner")
    _import("hyperopt.anneal")
    if cls.bench_name.startswith("nni."):
        tuner = cls(algorithm_name="anneal", optimize_mode="maximize")
        tuner.bench_seed = seed
        return {"tuner": tuner}
    return {"tuner": cls(optimize_mode="maximize", seed=seed)}


def _cfo(seed: int) -> dict[str, Any]:
    cls = _first("hpo_tools.cost_frugal.CfoTuner")
    # The low-cost start is the untuned config's values; a trial's cost is its trainer steps
    # (the "steps" key of the final result the driver reports).
    return {"tuner": cls(optimize_mode="maximize", base_config=str(EXAMPLE / "pipeline.config"),
                         cost="steps", seed=seed)}


def _blendsearch(seed: int) -> dict[str, Any]:
    cls = _first("hpo_tools.cost_frugal.BlendSearchTuner")
    return {"tuner": cls(optimize_mode="maximize", base_config=str(EXAMPLE / "pipeline.config"),
                         cost="steps", seed=seed)}


def _hyperband(seed: int) -> dict[str, Any]:
    cls = _first("hpo_tools.tuners.SafeHyperband", "hpo_tools.tuners.Hyperband",
                 "nni.algorithms.hpo.hyperband_advisor.Hyperband")
    return {"advisor": _new_advisor(cls, seed, optimize_mode="maximize", R=BUDGET_UNITS, eta=3)}


def _bohb(seed: int) -> dict[str, Any]:
    cls = _first("hpo_tools.tuners.SafeBOHB", "hpo_tools.tuners.BOHB",
                 "nni.algorithms.hpo.bohb_advisor.BOHB")
    _import("ConfigSpace.ConfigurationSpace")
    return {"advisor": _new_advisor(cls, seed, optimize_mode="maximize", min_budget=1,
                                    max_budget=BUDGET_UNITS, eta=3)}


#: Methods by name; each factory takes the benchmark seed and returns {"tuner", "assessor"} or
#: {"advisor"}, or raises MethodUnavailable.
METHODS = {
    "TPE+PAIAssessor": _tpe_assessor,
    "TPE+PAIAssessor(start_step=6)": lambda seed: _tpe_assessor(seed, start_step=6),
    "TPE": _tpe,
    "Random": _random,
    "Grid": _grid,
    "Anneal": _anneal,
    "CFO": _cfo,
    "BlendSearch": _blendsearch,
    "Hyperband": _hyperband,
    "BOHB": _bohb,
}
#: The classes each method ran with (filled by run_method).
CLASSES: dict[str, str] = {}
#: Hyperband/BOHB's budget unit is one evaluation interval; R = a full run.
BUDGET_UNITS = FULL_STEPS // EVAL_EVERY


def _new_advisor(cls: Any, seed: int, **kwargs: Any) -> Any:
    """An NNI advisor built outside NNI: no command channel, its commands captured."""
    from nni.runtime import msg_dispatcher_base

    # MsgDispatcherBase connects to NNI's manager unless the channel's URL is a unit test's.
    env = msg_dispatcher_base.dispatcher_env_vars
    if not env.NNI_TUNER_COMMAND_CHANNEL:
        msg_dispatcher_base.dispatcher_env_vars = env._replace(
            NNI_TUNER_COMMAND_CHANNEL="ws://_unittest_bench_search")
    advisor = cls(**kwargs)
    advisor.bench_seed = seed
    return advisor


# ------------------------------------------------------------------------------------------------
# driving a method against the surrogate
# ------------------------------------------------------------------------------------------------


def drive_tuner(spec: dict[str, Any], surrogate: Surrogate, seed: int,
                budget_steps: int) -> list[dict[str, Any]]:
    """One experiment, trials one at a time, as NNI's dispatcher calls a tuner and an assessor."""
    import nni

    tuner, assessor = spec["tuner"], spec.get("assessor")
    tuner.update_search_space(surrogate.space)
    rval = getattr(tuner, "rval", None)
    if rval is not None and hasattr(rval, "rstate"):
        # NNI's HyperoptTuner (Anneal) draws from an unseeded RandomState: seeded here.
        import numpy as np

        rval.rstate = np.random.RandomState(seed)
    trials: list[dict[str, Any]] = []
    spent = 0
    parameter_id = 0
    while spent < budget_steps:
        try:
            params = _plain(tuner.generate_parameters(parameter_id))
        except nni.NoMoreTrialError:
            break
        curve = surrogate.curve(params, seed)
        job = f"t{parameter_id}"
        history: list[float] = []
        stopped = False
        for value in curve:
            history.append(value)
            if assessor is not None and _is_bad(assessor.assess_trial(job, list(history))):
                stopped = True
                break
        steps = len(history) * EVAL_EVERY
        final = None if stopped else history[-1]
        if final is not None:
            # As a trial reports it: the score as "default", plus the steps it trained.
            tuner.receive_trial_result(parameter_id, params, {"default": final, "steps": steps})
        if assessor is not None:
            assessor.trial_end(job, not stopped)
        tuner.trial_end(parameter_id, not stopped)
        spent += steps
        trials.append({"params": params, "steps": steps, "final": final,
                       "true": surrogate.mean_curve(params)[-1]})
        parameter_id += 1
    return trials


def _is_bad(result: Any) -> bool:
    """An assessor's answer is Bad (AssessResult.Bad, or False as NNI's dispatcher accepts)."""
    from nni.assessor import AssessResult

    return result is AssessResult.Bad or result is False


def drive_advisor(spec: dict[str, Any], surrogate: Surrogate, seed: int,
                  budget_steps: int) -> list[dict[str, Any]]:
    """One experiment with an NNI advisor (Hyperband, BOHB) through its ``handle_*`` methods."""
    import nni
    import numpy as np

    advisor = spec["advisor"]
    sent: list[tuple[Any, Any]] = []
    advisor.send = lambda command, data: sent.append((command, data))
    # Outside NNI, nothing was recovered from a previous experiment; NNI 3.0 compares the
    # advisors' string ids with an int there (microsoft/nni#5263).
    advisor.is_created_in_previous_exp = lambda _id: False
    # NNI seeds Hyperband's generator from the clock and BOHB samples from numpy's global one
    # and an unseeded ConfigSpace: seeded here so that each benchmark seed is reproducible.
    np.random.seed(seed)
    random.seed(seed)
    advisor.handle_initialize(surrogate.space)
    if hasattr(advisor, "random_state"):
        advisor.random_state = np.random.RandomState(seed)
    if hasattr(getattr(advisor, "search_space", None), "seed"):
        advisor.search_space.seed(seed)
    trials: list[dict[str, Any]] = []
    spent = 0
    while spent < budget_steps:
        sent.clear()
        advisor.handle_request_trial_jobs(1)
        jobs = [nni.load(d) for c, d in sent if getattr(c, "name", str(c)) == "NewTrialJob"]
        if not jobs:
            break
        job = jobs[0]
        params = dict(job["parameters"])
        units = int(params.pop("TRIAL_BUDGET"))
        params = _plain(params)
        curve = surrogate.curve(params, seed)[:units]
        trial_job_id = f"t{len(trials)}"
        for k, value in enumerate(curve):
            advisor.handle_report_metric_data({
                "parameter_id": job["parameter_id"], "trial_job_id": trial_job_id,
                "type": "PERIODICAL", "sequence": k, "value": nni.dump(value)})
        advisor.handle_report_metric_data({
            "parameter_id": job["parameter_id"], "trial_job_id": trial_job_id,
            "type": "FINAL", "sequence": 0, "value": nni.dump(curve[-1])})
        advisor.handle_trial_end({"trial_job_id": trial_job_id, "event": "SUCCEEDED",
                                  "hyper_params": nni.dump(job)})
        spent += units * EVAL_EVERY
        trials.append({"params": params, "steps": units * EVAL_EVERY, "final": curve[-1],
                       "true": surrogate.mean_curve(params)[-1]})
    return trials


def run_method(name: str, surrogate: Surrogate, seed: int,
               budget_steps: int) -> list[dict[str, Any]]:
    spec = METHODS[name](seed)
    CLASSES[name] = " + ".join(type(v).bench_name for v in spec.values())
    if "advisor" in spec:
        return drive_advisor(spec, surrogate, seed, budget_steps)
    return drive_tuner(spec, surrogate, seed, budget_steps)


# ------------------------------------------------------------------------------------------------
# summaries and plots
# ------------------------------------------------------------------------------------------------


def best_so_far(trials: list[dict[str, Any]]) -> list[tuple[int, int, float, float]]:
    """``(trials, cost in steps, best final score so far, its config's noise-free score)``."""
    out = []
    cost, best, true = 0, float("-inf"), float("nan")
    for n, t in enumerate(trials, start=1):
        cost += t["steps"]
        if t["final"] is not None and t["final"] > best:
            best, true = t["final"], t["true"]
        out.append((n, cost, best, true))
    return out


def cost_to_reach(curve: list[tuple[int, int, float, float]], target: float,
                  column: int = 2) -> tuple[int, int] | None:
    """``(cost, trials)`` when the best so far (column 2) or its noise-free score (3) first
    reaches ``target``; None when it never does."""
    for row in curve:
        if row[column] >= target - 1e-12:
            return row[1], row[0]
    return None


def _median_or_none(values: list[float]) -> float | None:
    """The median, counting None as infinitely large; None when that median is infinite."""
    import numpy as np

    med = float(np.median([math.inf if v is None else v for v in values]))
    return None if math.isinf(med) else med


#: Costs (in full runs) at which the picked config's noise-free score is tabled.
CHECKPOINTS = (3, 10, 30, 100, 243)


def _pick_at(curve: list[tuple[int, int, float, float]], steps: float) -> float:
    """The noise-free score of the config picked (best observed) once ``steps`` are spent."""
    true = math.nan
    for _, cost, _, value in curve:
        if cost > steps:
            break
        true = value
    return true


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per method: the best at the budget, and the cost to reach the grid's best, over seeds.

    The grid's best is taken per seed (the same noise draws): its best observed score, and the
    cost at which the grid first observed it. A seed where a method never reaches it counts as
    an infinite cost, so a median of "not reached" means half the seeds or more.
    """
    import numpy as np

    untuned = results["untuned_mean"]
    grid = {s: best_so_far(t) for s, t in results["trials"]["Grid"].items()}
    target = {s: c[-1][2] for s, c in grid.items()}
    grid_cost = {s: cost_to_reach(c, target[s])[0] for s, c in grid.items()}
    rows = {}
    for name, per_seed in results["trials"].items():
        curves = {s: best_so_far(t) for s, t in per_seed.items()}
        finals = [c[-1][2] for c in curves.values()]
        trues = [c[-1][3] for c in curves.values()]
        reach = {s: cost_to_reach(c, target[s]) for s, c in curves.items()}
        rows[name] = {
            "best_median": float(np.median(finals)),
            "best_q25": float(np.percentile(finals, 25)),
            "best_q75": float(np.percentile(finals, 75)),
            "gain_vs_untuned": float(np.median(finals) / untuned - 1),
            "true_median": float(np.median(trues)),
            "true_q25": float(np.percentile(trues, 25)),
            "true_q75": float(np.percentile(trues, 75)),
            "true_gain_vs_untuned": float(np.median(trues) / untuned - 1),
            "true_at": {n: float(np.nanmedian([_pick_at(c, n * FULL_STEPS)
                                               for c in curves.values()]))
                        for n in CHECKPOINTS if n <= results["budget_runs"]},
            "seeds": len(finals),
            "trials_median": float(np.median([len(t) for t in per_seed.values()])),
            "reached": sum(r is not None for r in reach.values()),
            "cost_median": _median_or_none([None if r is None else r[0]
                                            for r in reach.values()]),
            "trials_to_reach_median": _median_or_none([None if r is None else r[1]
                                                       for r in reach.values()]),
            "ratio_median": _median_or_none([None if r is None else r[0] / grid_cost[s]
                                             for s, r in reach.items()]),
        }
    return {
        "rows": rows,
        "grid_best_median": float(np.median(list(target.values()))),
        "grid_cost_median": float(np.median(list(grid_cost.values()))),
        "untuned_mean": untuned,
    }


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Best so far against trials and against cost, and the picked config's noise-free score
    against cost: median and IQR over seeds, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = summarise(results)
    cost_label = f"cost: trainer steps, in full runs of {FULL_STEPS} steps"
    observed = "best score so far (0.5 auc_ctr + 0.5 auc_cvr)"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for axis, column, xlabel, ylabel, fname in (
        ("trials", 2, "trials", observed, "search_trials.png"),
        ("cost", 2, cost_label, observed, "search_cost.png"),
        ("cost", 3, cost_label, "noise-free full-run score of the config picked so far",
         "search_cost_noise_free.png"),
    ):
        fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
        for name, per_seed in results["trials"].items():
            curves = [best_so_far(t) for t in per_seed.values()]
            if axis == "trials":
                xs = np.arange(1, int(max(len(c) for c in curves)) + 1)
                ys = np.array([[c[min(int(x), len(c)) - 1][column] for x in xs] for c in curves])
            else:
                xs = np.geomspace(0.3, results["budget_runs"], 200)
                ys = np.array([[_at_cost(c, x * FULL_STEPS, column) for x in xs]
                               for c in curves])
            ys = np.where(np.isinf(ys), np.nan, ys)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN before a first result
                med = np.nanmedian(ys, axis=0)
                lo = np.nanpercentile(ys, 25, axis=0)
                hi = np.nanpercentile(ys, 75, axis=0)
            line, = ax.plot(xs, med, label=name, lw=1.6)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
        ax.axhline(summary["untuned_mean"], color="k", ls=":", lw=1,
                   label=f"untuned config {summary['untuned_mean']:.4f}")
        if column == 2:
            ax.axhline(summary["grid_best_median"], color="grey", ls="--", lw=1,
                       label=f"grid's best (median) {summary['grid_best_median']:.4f}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(summary["untuned_mean"] - 0.01, None)
        ax.set_title(f"median and IQR over {len(results['seeds'])} seeds; surrogate of "
                     f"{results['runs']} real trainer runs", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _at_cost(curve: list[tuple[int, int, float, float]], steps: float, column: int) -> float:
    value = float("-inf")
    for row in curve:
        if row[1] > steps:
            break
        value = row[column]
    return value


def run(seeds: int, budget_runs: int, methods: list[str], out: Path, trials_out: Path,
        image_dir: Path) -> int:
    import numpy as np

    runs = read_runs()
    space = load_search_space()
    began = time.monotonic()
    surrogate = Surrogate(space, runs)
    surrogate_info = {"runs": len(surrogate.x),
                      "lengthscales": np.round(surrogate.lengthscales, 3).tolist(),
                      "signal": surrogate.signal, "noise": round(surrogate.noise, 4),
                      "loo_rmse_standardised": round(surrogate.loo_rmse_std, 4)}
    _logger.info("surrogate: %s (fit %.1f s)", surrogate_info, time.monotonic() - began)
    untuned = [r["final_score"] for r in runs if r["kind"] == "untuned"]
    results: dict[str, Any] = {
        "seeds": list(range(seeds)), "budget_runs": budget_runs, "full_steps": FULL_STEPS,
        "untuned_mean": float(np.mean(untuned)), "untuned_runs": untuned, "runs": len(runs),
        "trials": {}, "missing": {}, "seconds": {}, "classes": {},
    }
    for name in methods:
        began = time.monotonic()
        try:
            per_seed = {str(s): run_method(name, surrogate, s, budget_runs * FULL_STEPS)
                        for s in range(seeds)}
        except MethodUnavailable as err:
            results["missing"][name] = f"not available: {err}"
            _logger.info("%s: missing (%s)", name, err)
            continue
        except Exception as err:  # noqa: BLE001 - a tuner that fails on this space is a result
            where = CLASSES.get(name, "?")
            results["missing"][name] = f"{where} failed: {type(err).__name__}: {err}"
            _logger.exception("%s failed", name)
            continue
        results["trials"][name] = per_seed
        results["seconds"][name] = round(time.monotonic() - began, 1)
        results["classes"][name] = CLASSES[name]
        _logger.info("%s: %d seeds in %.1f s", name, seeds, time.monotonic() - began)
    summary = summarise(results)
    out.write_text(json.dumps({
        key: results[key] for key in ("seeds", "budget_runs", "full_steps", "untuned_mean",
                                      "untuned_runs", "runs", "missing", "seconds", "classes")
    } | {"surrogate": surrogate_info, "summary": summary}, indent=1) + "\n")
    trials_out.parent.mkdir(parents=True, exist_ok=True)
    trials_out.write_text(json.dumps(results))
    print(markdown_table(summary, results))
    for path in plot(results, image_dir):
        print(f"plot: {path}")
    return 0


def markdown_table(summary: dict[str, Any], results: dict[str, Any]) -> str:
    full = FULL_STEPS
    rows = summary["rows"]
    lines = [
        f"untuned config: {summary['untuned_mean']:.4f} (mean of {len(results['untuned_runs'])} "
        f"trainer seeds); budget {results['budget_runs']} full runs of {full} steps per "
        f"experiment; {len(results['seeds'])} seeds; grid's best observed (median over seeds) "
        f"{summary['grid_best_median']:.4f}, first seen after "
        f"{summary['grid_cost_median'] / full:.1f} full runs (median)",
        "",
        "| method | best observed at budget, median [IQR] | vs untuned | noise-free score of "
        "the picked config, median [IQR] | vs untuned | trials run |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['best_median']:.4f} [{row['best_q25']:.4f}, {row['best_q75']:.4f}] "
            f"| {row['gain_vs_untuned']:+.2%} | {row['true_median']:.4f} "
            f"[{row['true_q25']:.4f}, {row['true_q75']:.4f}] | {row['true_gain_vs_untuned']:+.2%} "
            f"| {row['trials_median']:.0f} |")
    for name, reason in results["missing"].items():
        lines.append(f"| {name} | missing: {reason} | | | | |")
    lines += [
        "",
        "| method | seeds reaching the grid's best | cost to reach it, median (full runs) "
        "| trials | cost / grid's cost |",
        "|---|---|---|---|---|",
    ]
    for name, row in sorted(rows.items(), key=lambda kv: kv[1]["ratio_median"]
                            if kv[1]["ratio_median"] is not None else math.inf):
        cost = None if row["cost_median"] is None else row["cost_median"] / full
        lines.append(f"| {name} | {row['reached']}/{row['seeds']} | {_fmt(cost, '.1f')} "
                     f"| {_fmt(row['trials_to_reach_median'], '.0f')} "
                     f"| {_fmt(row['ratio_median'], '.3f')} |")
    lines.append("")
    lines.append("(\"-\": not reached in half the seeds or more)")
    checkpoints = list(next(iter(rows.values()))["true_at"])
    lines += [
        "",
        "| method | " + " | ".join(f"{n} full runs" for n in checkpoints) + " |",
        "|---|" + "---|" * len(checkpoints),
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row['true_at'][n]:.4f}"
                                                 for n in checkpoints) + " |")
    lines.append("")
    lines.append("(noise-free score of the config picked so far, median over seeds, by cost)")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_collect = sub.add_parser("collect", help="real trainer runs into " + str(RUNS_FILE))
    p_collect.add_argument("--work-dir", type=Path,
                           default=Path(tempfile.gettempdir()) / "bench_search")
    p_collect.add_argument("--limit", type=int, default=None, help="at most this many runs")
    sub.add_parser("validate", help="the surrogate's held-out error (5-fold)")
    p_plot = sub.add_parser("plot", help="tables and plots again from run's --trials-out")
    p_plot.add_argument("--trials", type=Path,
                        default=Path(tempfile.gettempdir()) / "bench_search" / "search_trials.json")
    p_plot.add_argument("--image-dir", type=Path, default=REPO / "docs" / "images")
    p_run = sub.add_parser("run", help="each method against the surrogate")
    p_run.add_argument("--seeds", type=int, default=10)
    p_run.add_argument("--budget-runs", type=int, default=243,
                       help="cost budget per experiment, in full runs (default: the grid's 243)")
    p_run.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p_run.add_argument("--out", type=Path, default=DATA_DIR / "search_summary.json",
                       help="the summary (JSON)")
    p_run.add_argument("--trials-out", type=Path,
                       default=Path(tempfile.gettempdir()) / "bench_search" / "search_trials.json",
                       help="every trial of every method and seed (JSON, large)")
    p_run.add_argument("--image-dir", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hpo_tools").setLevel(logging.WARNING)
    logging.getLogger("nni").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "collect":
        return collect(args.work_dir, args.limit)
    if args.command == "validate":
        print(json.dumps(validate(read_runs()), indent=2))
        return 0
    if args.command == "plot":
        results = json.loads(args.trials.read_text())
        print(markdown_table(summarise(results), results))
        for path in plot(results, args.image_dir):
            print(f"plot: {path}")
        return 0
    if args.command == "run":
        return run(args.seeds, args.budget_runs, args.methods, args.out, args.trials_out,
                   args.image_dir)
    return 2


if __name__ == "__main__":
    sys.exit(main())
