"""Trial runner per platform (run by hand; results in docs/benchmarks.md, "Trial runner per
platform").

For Local and each cloud-job platform (DLC, PAI, PAIFLOW) under the fake cloud
(``HPO_TOOLS_FAKE_CLOUD``, jobs that succeed after one running check): the time from starting
``hpo-tools run --params ...`` to its first job being created (the fake's ``submissions.jsonl``
gets its line; Local: the command writes a file), and the runner's peak RSS (``ru_maxrss`` of
the finished process, from ``os.wait4``). Each platform imports its SDK only when it is used,
so Local pays none and each cloud platform pays its own.

Usage::

    .venv/bin/python benchmarks/bench_platforms.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tBenchId", "ALIBABA_CLOUD_ACCESS_KEY_SECRET":
        "benchSecretKey123"}
METRIC = '[metric_config]\nmetric_type=stdout\nmetric_dict={"auc=([0-9.]+)": 1}\n'
PLATFORMS = {
    "Local": ("cmd1=echo created > {marker}; echo auc=0.5\n", "", None),
    "DLC": ("cmd1=dlc submit tfjob --name=b --command='echo auc=0.5' --workspace_id=1 "
            "--workers=1 --worker_image=img --worker_spec=ecs.g6\n",
            "[dlc_config]\nregion=cn-hangzhou\npoll_interval=0.1\n", ".dlc"),
    "PAI": ("cmd1=pai training-job create --name=b --algorithm=easyrec "
            "--instance-type=ecs.g6\n",
            "[ts_config]\nregion_id=cn-hangzhou\npoll_interval=0.1\n", ".pai"),
    "PAIFLOW": ("cmd1=paiflow run --name=b --pipeline-id=p1\n",
                "[paiflow_config]\nregion_id=cn-hangzhou\nworkspace_id=1\npoll_interval=0.1\n",
                ".paiflow"),
}


def one_run(name: str, root: Path, index: int) -> tuple:
    """(seconds to the first job created, peak RSS in MB) of one ``hpo-tools run``."""
    command, section, service = PLATFORMS[name]
    cloud = root / f"cloud-{name}{index}"
    cloud.mkdir()
    marker = cloud / "created"
    trial = root / f"{name}{index}.ini"
    trial.write_text(f"[platform_config]\nname={name}\n" + command.format(marker=marker)
                     + METRIC + section)
    created = marker if service is None else cloud / service / "submissions.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env.update(KEYS, HPO_TOOLS_FAKE_CLOUD=str(cloud), HPO_TOOLS_FAKE_CLOUD_JOBS="succeed")
    hpo_tools = shutil.which("hpo-tools", path=str(Path(sys.executable).parent)) or "hpo-tools"
    started = time.monotonic()
    proc = subprocess.Popen(
        [hpo_tools, "run", "--config", str(trial), "--params", '{"lr": 0.01}', "--exp_dir",
         str(root / "exp"), "--trial-id", f"{name}{index}", "--interval", "0.1"],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = None
    while proc.poll() is None and seen is None:
        if created.exists() and created.stat().st_size:
            seen = time.monotonic() - started
        time.sleep(0.002)
    _, _, usage = os.wait4(proc.pid, 0)  # a fake job prints no metric: the trial may fail
    if seen is None and created.exists():
        seen = time.monotonic() - started
    if seen is None:
        raise SystemExit(f"{name}: the trial created no job")
    return seen, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print("| platform | start to first job created, median (max) | runner peak RSS, max |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-platforms-") as tmp:
        for name in PLATFORMS:
            runs = [one_run(name, Path(tmp), i) for i in range(args.runs)]
            times = [t for t, _ in runs]
            print(f"| {name} | {statistics.median(times):.3f} s ({max(times):.3f} s) | "
                  f"{max(r for _, r in runs):.1f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
