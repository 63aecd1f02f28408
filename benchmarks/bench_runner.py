"""Trial-runner benchmarks (run by hand; results in docs/benchmarks.md, "Trial runner").

(a) Start-up: time from starting ``hpo-tools run --params ...`` to its first command being spawned
    (target < 0.5 s). The command writes bash's ``$EPOCHREALTIME`` to a file; the time is measured
    from just before ``Popen``. Peer, in the same run: the imports of the old EasyRec runner
    (``import tensorflow, nni, oss2, odps``), which it paid before launching anything.
(b) Memory: the runner's peak RSS (``VmHWM`` of ``python -m hpo_tools.run``) during a trial of a
    real NNI experiment (local training service; target < 250 MB). The trial's command reads its
    parent's ``/proc/<pid>/status`` after the runner has imported NNI, received its parameters and
    followed metrics for a while. Peer: the peak RSS of the old runner's imports.

Usage::

    .venv/bin/python benchmarks/bench_runner.py [--runs 5] [--port 18400] [--skip-nni]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER_IMPORTS = "import tensorflow, nni, oss2, odps"
METRIC = '[metric_config]\nmetric_type=stdout\nmetric_dict={"auc=([0-9.]+)": 1}\n'


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}


def startup(runs: int) -> list[float]:
    """Seconds from Popen of `hpo-tools run` to its first command running."""
    hpo_tools = shutil.which("hpo-tools", path=str(Path(sys.executable).parent)) or "hpo-tools"
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        root = Path(tmp)
        marker = root / "spawned"
        trial = root / "trial.ini"
        trial.write_text(
            "[platform_config]\nname=Local\n"
            f"cmd1=echo $EPOCHREALTIME > {marker}; echo auc=0.5\n" + METRIC
        )
        for i in range(runs):
            marker.unlink(missing_ok=True)
            started = time.time()
            subprocess.run(
                [hpo_tools, "run", "--config", str(trial), "--params", '{"lr": 0.01}',
                 "--exp_dir", str(root / "exp"), "--trial-id", f"t{i}", "--interval", "0.1"],
                check=True, env=_clean_env(), stdout=subprocess.DEVNULL, cwd=root,
            )
            times.append(float(marker.read_text()) - started)
    return times


def peer_import(runs: int) -> tuple[list[float], int]:
    """Seconds and peak RSS (kB) of the old runner's imports, in fresh processes."""
    times, peak = [], 0
    code = (
        f"{PEER_IMPORTS}\nimport resource\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    for _ in range(runs):
        started = time.time()
        done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, env=_clean_env())
        times.append(time.time() - started)
        peak = max(peak, int(done.stdout.strip().splitlines()[-1]))
    return times, peak


def runner_rss_under_nni(port: int) -> int:
    """Peak RSS (kB) of the runner process during one trial of a real NNI experiment."""
    from nni.experiment import Experiment

    with tempfile.TemporaryDirectory(prefix="bench-runner-nni-") as tmp:
        root = Path(tmp)
        out = root / "runner_status.txt"
        # The runner is the parent of the shell that runs cmd1 (";" keeps bash alive).
        (root / "trial.ini").write_text(
            "[platform_config]\nname=Local\n"
            f"cmd1=for i in 1 2 3 4 5; do echo auc=0.$i; sleep 0.5; done;"
            f" grep VmHWM /proc/$PPID/status > {out}; cat /proc/$PPID/cmdline >> {out}\n"
            + METRIC
        )
        exp = Experiment("local")
        exp.config.trial_command = f"{sys.executable} -m hpo_tools.run --config trial.ini"
        exp.config.trial_code_directory = str(root)
        exp.config.experiment_working_directory = str(root / "nni")
        exp.config.search_space = {"lr": {"_type": "choice", "_value": [0.01]}}
        exp.config.tuner.name = "TPE"
        exp.config.tuner.class_args = {"optimize_mode": "maximize"}
        exp.config.max_trial_number = 1
        exp.config.trial_concurrency = 1
        try:
            exp.start(port)
            deadline = time.monotonic() + 120
            while exp.get_status() not in ("DONE", "ERROR", "STOPPED"):
                if time.monotonic() > deadline:
                    raise RuntimeError("NNI experiment did not finish in 120 s")
                time.sleep(1)
            statuses = [t.status for t in exp.list_trial_jobs()]
        finally:
            exp.stop()
        if statuses != ["SUCCEEDED"]:
            raise RuntimeError(f"trial did not succeed: {statuses}")
        text = out.read_text()
        if "hpo_tools.run" not in text:
            raise RuntimeError(f"measured the wrong process: {text!r}")
        return int(text.split()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--skip-nni", action="store_true")
    args = parser.parse_args()

    ours = startup(args.runs)
    peer_times, peer_rss = peer_import(max(1, args.runs // 2))
    result = {
        "startup_median_s": round(statistics.median(ours), 3),
        "startup_max_s": round(max(ours), 3),
        "peer_import_median_s": round(statistics.median(peer_times), 3),
        "startup_speedup": round(statistics.median(peer_times) / statistics.median(ours), 1),
        "peer_import_peak_rss_mb": round(peer_rss / 1024, 1),
    }
    if not args.skip_nni:
        rss = runner_rss_under_nni(args.port)
        result["runner_peak_rss_under_nni_mb"] = round(rss / 1024, 1)
        result["rss_ratio_peer_over_runner"] = round(peer_rss / rss, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
