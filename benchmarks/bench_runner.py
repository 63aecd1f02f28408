"""Trial-runner benchmarks (run by hand; results in docs/benchmarks.md, "Trial runner").

(a) Start-up: time from starting ``hpo-tools run --params ...`` to its first command being spawned
    (target < 0.5 s). The command writes bash's ``$EPOCHREALTIME`` to a file; the time is measured
    from just before ``Popen``. Peer, in the same run: the imports of the old EasyRec runner
    (``import tensorflow, nni, oss2, odps``), which it paid before launching anything.
(b) Memory: the runner's peak RSS (``VmHWM`` of ``python -m hpo_tools.run``) during a trial of a
    real NNI experiment (local training service; target < 250 MB). The trial's command reads its
    parent's ``/proc/<pid>/status`` after the runner has imported NNI, received its parameters and
    followed metrics for a while. Peer: the peak RSS of the old runner's imports.
(c) ``--dlc``: what the DLC platform adds to a runner (target < 50 MB and < 0.3 s), through the
    shipped code path: the SDK's own client against a DLC REST server on localhost
    (``hpo_tools.testing.dlc.DlcRestServer``). Start-up = ``hpo-tools run`` start to CreateJob
    received, against (a); memory = the runner's ``VmHWM`` during a DLC trial of a real NNI
    experiment (read from ``/proc`` while the job runs), against (b); and the SDK's import alone
    in a process that has imported ``nni`` and the runner (as a trial runner has).

Usage::

    .venv/bin/python benchmarks/bench_runner.py [--runs 5] [--port 18400] [--skip-nni] [--dlc]
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


DLC_TRIAL = """[platform_config]
name=DLC
cmd1=dlc submit tfjob --name=bench_${{trial_id}} --command='python train.py' --workspace_id=1
    --workers=1 --worker_image=img --worker_spec=ecs.g6.xlarge
[metric_config]
metric_type=stdout
metric_source=cmd1,worker
metric_dict={{"auc=([0-9.]+)": 1}}
[dlc_config]
end_point={endpoint}
protocol=http
access_id=LTAI5tBenchId000
access_key=benchSecret000000
poll_interval={poll}
"""
DLC_SDK_IMPORT = (
    "import resource, time, nni, hpo_tools.trial.runner, hpo_tools.trial_files\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "started = time.perf_counter()\n"
    "from alibabacloud_pai_dlc20201203.client import Client\n"
    "from alibabacloud_pai_dlc20201203 import models\n"
    "from alibabacloud_tea_openapi import models as open_api_models\n"
    "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
    " - before)\n"
)


def _dlc_plan(fake, running_checks: int) -> None:
    """The next job: running for ``running_checks`` checks (one auc line each), then done."""
    steps = [{"status": "Running", "logs": {"worker": [f"auc=0.{i % 9 + 1}"]}}
             for i in range(running_checks)]
    fake.plan_next(steps=steps + [{"status": "Succeeded"}])


def dlc_startup(runs: int) -> list[float]:
    """Seconds from Popen of `hpo-tools run` (a DLC trial) to its CreateJob being received."""
    from hpo_tools.testing.dlc import DlcRestServer, FakeDlcClient

    hpo_tools = shutil.which("hpo-tools", path=str(Path(sys.executable).parent)) or "hpo-tools"
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-runner-dlc-") as tmp:
        root = Path(tmp)
        fake = FakeDlcClient(root / "cloud", access_key_id="x", access_key_secret="y")
        with DlcRestServer(fake) as server:
            (root / "trial.ini").write_text(DLC_TRIAL.format(endpoint=server.endpoint, poll=0.05))
            for i in range(runs):
                _dlc_plan(fake, 1)
                started = time.time()
                subprocess.run(
                    [hpo_tools, "run", "--config", "trial.ini", "--params", '{"lr": 0.01}',
                     "--exp_dir", str(root / "exp"), "--trial-id", f"t{i}", "--interval", "0.1"],
                    check=True, env=_clean_env(), stdout=subprocess.DEVNULL, cwd=root,
                )
                times.append(fake.job(fake.job_ids()[-1])["seq"] - started)
    return times


def _runner_hwm(exp_id: str) -> int:
    """The largest VmHWM (kB) of a live `hpo_tools.run` process of experiment ``exp_id``."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"hpo_tools.run" not in cmdline:
                continue
            if f"NNI_EXP_ID={exp_id}".encode() not in (entry / "environ").read_bytes():
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak


def dlc_runner_rss_under_nni(port: int) -> int:
    """Peak RSS (kB) of the runner during one DLC trial of a real NNI experiment."""
    from nni.experiment import Experiment

    from hpo_tools.testing.dlc import DlcRestServer, FakeDlcClient

    with tempfile.TemporaryDirectory(prefix="bench-runner-dlc-nni-") as tmp:
        root = Path(tmp)
        fake = FakeDlcClient(root / "cloud", access_key_id="x", access_key_secret="y")
        _dlc_plan(fake, 30)  # 30 checks 0.1 s apart: 3 s of following, logs and metrics
        with DlcRestServer(fake) as server:
            (root / "trial.ini").write_text(DLC_TRIAL.format(endpoint=server.endpoint, poll=0.1))
            exp = Experiment("local")
            exp.config.trial_command = f"{sys.executable} -m hpo_tools.run --config trial.ini"
            exp.config.trial_code_directory = str(root)
            exp.config.experiment_working_directory = str(root / "nni")
            exp.config.search_space = {"lr": {"_type": "choice", "_value": [0.01]}}
            exp.config.tuner.name = "TPE"
            exp.config.tuner.class_args = {"optimize_mode": "maximize"}
            exp.config.max_trial_number = 1
            exp.config.trial_concurrency = 1
            peak = 0
            try:
                exp.start(port)
                deadline = time.monotonic() + 120
                while exp.get_status() not in ("DONE", "ERROR", "STOPPED"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("NNI experiment did not finish in 120 s")
                    peak = max(peak, _runner_hwm(exp.id))
                    time.sleep(0.1)
                statuses = [t.status for t in exp.list_trial_jobs()]
            finally:
                exp.stop()
        if statuses != ["SUCCEEDED"] or not peak:
            raise RuntimeError(f"trial did not succeed or was not seen: {statuses}, {peak}")
        return peak


def dlc_sdk_import(runs: int) -> tuple[list[float], int]:
    """Seconds and RSS (kB) the DLC SDK's import adds to a process holding nni and the runner."""
    times, added = [], 0
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", DLC_SDK_IMPORT], check=True,
                              capture_output=True, text=True, env=_clean_env())
        seconds, kilobytes = done.stdout.split()[-2:]
        times.append(float(seconds))
        added = max(added, int(kilobytes))
    return times, added


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--skip-nni", action="store_true")
    parser.add_argument("--dlc", action="store_true", help="also measure the DLC platform")
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
    if args.dlc:
        dlc = dlc_startup(args.runs)
        result["dlc_startup_median_s"] = round(statistics.median(dlc), 3)
        result["dlc_startup_max_s"] = round(max(dlc), 3)
        result["dlc_adds_startup_s"] = round(statistics.median(dlc) - statistics.median(ours), 3)
        sdk_times, sdk_kb = dlc_sdk_import(max(1, args.runs // 2))
        result["dlc_sdk_import_after_nni_median_s"] = round(statistics.median(sdk_times), 3)
        result["dlc_sdk_import_after_nni_adds_mb"] = round(sdk_kb / 1024, 1)
        if not args.skip_nni:
            dlc_rss = dlc_runner_rss_under_nni(args.port + 1)
            result["dlc_runner_peak_rss_under_nni_mb"] = round(dlc_rss / 1024, 1)
            result["dlc_adds_rss_mb"] = round((dlc_rss - rss) / 1024, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
