"""Running one fault case: a real runner, the fault at its moment, then what is left behind.

Each case is a real ``python -m hpo_tools.run --config trial.ini --exp_dir DIR`` process with
``NNI_OUTPUT_DIR`` set as NNI sets it (so the runner leaves a job-registry link in "NNI's"
experiment directory, as under NNI with ``--exp_dir`` elsewhere). Local jobs are real processes;
DLC, PAI training, PAI-Flow and MaxCompute are their fake SDK clients over one shared
fake-cloud directory (``HPO_TOOLS_FAKE_CLOUD``; every process sees the same jobs). The moment
is reached by a failpoint (``HPO_TOOLS_FAILPOINTS=<moment>=pause|kill``,
hpo_tools/failpoints.py), by the fake service's create plans (``hang_before``, ``hang``,
``lost``), or by :class:`FakeNniManager` holding a report. After a SIGKILL the orphan sweep
runs: ``hpo-tools kill`` or PAIAssessor's ``trial_end`` backstop, both given NNI's experiment
directory (the link leads them on).

It also brings the job faults: a local job's process SIGKILLed, or a cloud job stopped on the
service, once two steps are scored (crashes, hangs and damaged event files are the job's own
doing: tests/faults/fault_job.py, the fake services' plans).

A resume fault (``case.resume``) is a trial with ``resume=1`` reporting to the fake NNI manager,
run three times under the same trial id (:class:`Resumed`): an earlier run, stopped by SIGINT once
NNI has two of its steps (so that the faulted run has a reported.json to respect); the faulted
run, its job going on from the steps on disk (the fault and the sweep as in any case); and a
last run, whose job goes on from the steps on disk to its end. A local job is
tests/trial/fake_train.py (real event files; ``--first-step`` as a trainer restarted from its
checkpoint); a cloud job of each run is a new one with its own plan (:func:`resume_plans`).

:meth:`Faults.run` only observes; the tests assert on its :class:`Outcome`.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpo_tools.cloud import ENV_FAKE_CLOUD
from hpo_tools.failpoints import ENV_FAILPOINT_DIR, ENV_FAILPOINTS
from hpo_tools.platforms.credentials import ALIBABA_CLOUD_ENV
from tests.e2e.procs import live_processes

from .cases import CORRUPT_EVENTS, CREATE_LOST, LOCAL, MAXCOMPUTE, NNI_MOMENTS, Case

REPO = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("fault_job.py")
PYTHON = sys.executable
ACCESS_ID = "LTAI5tFaultInjection01"
ACCESS_KEY = "faultInjectionSecret2718281"
#: What the fake cloud's credentials are, and where (the sweeping process needs them too).
CREDENTIALS = {ALIBABA_CLOUD_ENV[0]: ACCESS_ID, ALIBABA_CLOUD_ENV[1]: ACCESS_KEY,
               "ODPS_ACCESS_ID": ACCESS_ID, "ODPS_ACCESS_KEY": ACCESS_KEY}
#: The environment variable every process of a case inherits: how /proc tells them apart.
MARKER = "HPO_TOOLS_FAULT_CASE"
#: Seconds a runner may take from the signal to its death (issue 14; NNI SIGKILLs at 5 s).
DEADLINE = 3.0
#: Seconds the processes of a case get to be gone after the runner died (a local job's shell
#: gives its group 2 s between SIGTERM and SIGKILL when its runner is SIGKILLed).
PROC_GRACE = 8.0
_POLL = 0.02

# -- trial files -------------------------------------------------------------------------------

_CLOUD_KEYS = ("${ALIBABA_CLOUD_ACCESS_KEY_ID}", "${ALIBABA_CLOUD_ACCESS_KEY_SECRET}")
_STDOUT_METRIC = 'metric_type=stdout\nmetric_dict={"auc=([0-9.]+)": 1}\n'


#: How a job that hangs is told from one that runs: seconds without output or a new step.
JOB_TIMEOUT = 1
_SUMMARY_METRIC = ("metric_type=summary\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
                   'metric_dict={"auc": 1}\n')


def trial_file(case: Case) -> str:
    """The trial.ini of ``case``: one command whose job scores a step now and then."""
    text = _trial_file(case)
    if case.moment == "job_hang":
        text = text.replace("[platform_config]\n",
                            f"[platform_config]\njob_timeout={JOB_TIMEOUT}\n", 1)
    return text


def _trial_file(case: Case) -> str:
    token = case.token
    if case.platform == LOCAL:
        steps = 3 if case.job_ends else 600
        extra = {"job_crash": " --fail-at 3", "job_hang": " --hang-after 2",
                 CORRUPT_EVENTS: " --events ${NNI_OUTPUT_DIR}/model/eval_val"}
        metric = _SUMMARY_METRIC if case.moment == CORRUPT_EVENTS else _STDOUT_METRIC
        return (f"[platform_config]\nname=Local\ncmd1={PYTHON} -u {JOB} --steps {steps} "
                f"--sleep 0.1{extra.get(case.moment, '')}\n\n[metric_config]\n{metric}")
    if case.platform == "dlc":
        return (f"[platform_config]\nname=DLC\ncmd1=dlc submit tfjob --name={token} "
                "--command='python train.py' --workspace_id=ws1 --workers=1 "
                "--worker_image=img --worker_spec=ecs.g6\n\n"
                f"[metric_config]\n{_STDOUT_METRIC}metric_source=cmd1,worker\n\n"
                f"[dlc_config]\nregion=cn-shanghai\naccess_id={_CLOUD_KEYS[0]}\n"
                f"access_key={_CLOUD_KEYS[1]}\npoll_interval=0.2\n")
    if case.platform == "pai":
        return (f"[platform_config]\nname=PAI\ncmd1=pai training-job create --name={token} "
                "--algorithm=easyrec --instance-type=ecs.g6.xlarge --workspace-id=ws1 "
                "--input-channels=train=oss://bucket/train/ --output-channels=model=oss://bucket/m/"
                '\n\n[metric_config]\nmetric_type=api\nmetric_source=cmd1\nmetric_dict={"auc": 1}'
                f"\n\n[ts_config]\nregion_id=cn-hangzhou\naccess_key_id={_CLOUD_KEYS[0]}\n"
                f"access_key_secret={_CLOUD_KEYS[1]}\npoll_interval=0.2\n")
    if case.platform == MAXCOMPUTE:  # the token in the PAI command and the metric query
        return (f"[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext "
                f"-project algo_public -Dcmd=train -Dname={token}\n\n[metric_config]\n"
                f"metric_type=table\nmetric_source=SELECT step, auc FROM {MC_TABLE} "
                f"WHERE case = '{token}'\n"
                'metric_dict={"auc": 1}\n\n[odps_config]\nproject_name=faults\n'
                "odps_endpoint=http://service.odps.aliyun.com/api\n")
    if case.platform == "paiflow":
        return (f"[platform_config]\nname=PAIFLOW\ncmd1=paiflow run --name={token} "
                "--pipeline-id=pipeline-easyrec\n\n"
                f"[metric_config]\n{_STDOUT_METRIC}\n"
                "[paiflow_config]\nregion_id=cn-hangzhou\nworkspace_id=2332411\n"
                f"access_key_id={_CLOUD_KEYS[0]}\naccess_key_secret={_CLOUD_KEYS[1]}\n"
                "poll_interval=0.2\n")
    raise ValueError(case.platform)


#: The resume faults' local trainer: real event files; ``--first-step N`` goes on from step N,
#: as a trainer restarted from its checkpoint does. Its score of step K is ``auc_for(lr, K)``.
TRAIN = REPO / "tests" / "trial" / "fake_train.py"
RESUME_LR = 0.01
#: The three runs of a resume fault's trial, in order (:class:`Resumed`).
RUNS = ("earlier", "fault", "last")
#: Seconds NNI takes to answer a report in the faulted run of a resume fault SIGINTed at the
#: ``report`` failpoint (within the runner's 2 s report timeout, past its 0.05 s tick): the
#: report in flight when the signal comes is then always given up while NNI has it, the
#: one duplicate report_state.py documents ("a wait cut short"), made certain.
SLOW_ANSWER = 0.5
#: Steps a run's job scores when it ends by itself (a cloud job: every run's job).
RESUME_STEPS = 3
#: A cloud job's name in each run: ``<token><suffix>``, each with its own plan.
_CLOUD_RUN_NAMES = {"earlier": "", "fault": "-b", "last": "-c"}


def resume_trial_file(case: Case, run: str, first_step: int = 1) -> str:
    """The trial.ini of a resume fault's run ``run`` (``resume=1``): its job scores from
    ``first_step`` on (local; the steps on disk + 1), and ends by itself in the last run and
    when the fault comes after the job (``final_report``)."""
    ends = run == "last" or (run == "fault" and case.job_ends)
    if case.platform == LOCAL:
        last = first_step + RESUME_STEPS - 1 if ends else 600
        return (f"[platform_config]\nname=Local\nresume=1\ncmd1={PYTHON} -u {TRAIN} --lr "
                f"{RESUME_LR} --model_dir ${{NNI_OUTPUT_DIR}}/model --first-step {first_step} "
                f"--steps {last} --sleep 0.1\n\n[metric_config]\n{_SUMMARY_METRIC}")
    text = _trial_file(case).replace("[platform_config]\n", "[platform_config]\nresume=1\n", 1)
    return text.replace(f"--name={case.token} ",
                        f"--name={case.token}{_CLOUD_RUN_NAMES[run]} ", 1)


def slow_report(case: Case) -> bool:
    """Whether NNI answers late in the faulted run of ``case`` (:data:`SLOW_ANSWER`)."""
    return case.resume and case.moment == "report" and case.signum == signal.SIGINT


def job_step(case: Case, value: float) -> Optional[int]:
    """The step of the case's job(s) whose ``auc`` is ``value`` (each step scores its own:
    a local job's from its step, a cloud run's job scores steps of its own), or None for a
    value no step has."""
    if case.platform == LOCAL:
        from tests.trial.fake_train import auc_for

        step = round((value - auc_for(RESUME_LR, 0)) / 0.05)
        exact = auc_for(RESUME_LR, step)  # the event file holds it as a float32
    else:
        step = round((value - 0.6) / 0.01)
        exact = _auc(step)
    return step if abs(exact - value) < 1e-4 else None


MC_TABLE = "fault_metrics"
#: The rows the fake MaxCompute answers every metric query of the cases with.
MC_PLAN = {"sql_results": [{"match": f"FROM {MC_TABLE}", "rows": [
    {"step": 100, "auc": 0.61}, {"step": 200, "auc": 0.62}]}]}


def _auc(step: int) -> float:
    return round(0.6 + 0.01 * step, 4)


def _scored(platform: str, step: int) -> Dict[str, Any]:
    auc = _auc(step)
    if platform == "dlc":
        return {"status": "Running", "logs": {"worker": [f"step {step} auc={auc}"]}}
    if platform == "pai":
        return {"status": "Running", "metrics": {"auc": auc}}
    return {"status": "Running", "logs": [f"step {step} auc={auc}"]}


def cloud_plan(case: Case, statuses: Any) -> Dict[str, Any]:
    """The fake service's plan for the job of ``case`` (a plan.json rule matching its token):
    queued, three scored steps, then running for ever (or succeeded, when the moment comes
    after the job); the create as the moment needs it."""
    steps = [{"status": statuses.queued}] + [_scored(case.platform, k) for k in (1, 2, 3)]
    steps.append({"status": statuses.succeeded if case.job_ends else statuses.running})
    plan: Dict[str, Any] = {"match": case.token, "steps": steps}
    if case.moment == "job_crash":  # two good steps, then the service says it failed
        plan.update(steps=steps[:3] + [{"status": statuses.failed}], reason="OOMKilled")
    create = {"create_hang_before": "hang_before", "create_hang": "hang",
              CREATE_LOST: "lost"}.get(case.moment)
    if create is not None:
        plan.update(create=create, hang_seconds=60)
    return plan


def resume_plans(case: Case, statuses: Any) -> List[Dict[str, Any]]:
    """The plans of a cloud resume fault's jobs, one per run (``<token>``, ``<token>-b``,
    ``<token>-c``), each its own three steps (1-3, 4-6, 7-9): queued, the steps, then running
    for ever, or succeeded when the run's job ends by itself. Last first: the first rule that
    matches is taken, and ``<token>`` is in every name."""
    plans = []
    for number, run in enumerate(RUNS):
        ends = run == "last" or (run == "fault" and case.job_ends)
        steps = [{"status": statuses.queued}]
        steps += [_scored(case.platform, 3 * number + k) for k in range(1, RESUME_STEPS + 1)]
        steps.append({"status": statuses.succeeded if ends else statuses.running})
        plans.append({"match": f"{case.token}{_CLOUD_RUN_NAMES[run]}", "steps": steps})
    return plans[::-1]


# -- the fake services ---------------------------------------------------------------------------


def fake_service(platform: str, root: Path) -> Any:
    """The fake SDK client of a cloud ``platform`` over the fake-cloud directory ``root``."""
    if platform == "dlc":
        from hpo_tools.testing.dlc import FakeDlcClient as fake
    elif platform == "pai":
        from hpo_tools.testing.pai_training import FakeTrainingJobClient as fake
    else:
        from hpo_tools.testing.paiflow import FakePaiFlowClient as fake
    return fake(root, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)


class FakeNniManager:
    """**A fake** of NNI's manager at its HTTP boundary (a real server on localhost): a trial's
    command channel (``NNI_TRIAL_COMMAND_CHANNEL``: parameters out, metrics in) and the REST
    call :class:`~hpo_tools.trial.reporter.NniReporter` reads its parameter record with.

    A trial listed in :meth:`hold` has its first metric of that type (``PERIODICAL`` or
    ``FINAL``) taken and never answered (NNI's channel has no timeout); :meth:`held` is set
    then. A trial made :meth:`slow` has each metric taken at once and answered late.
    """

    RECORD = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": {},
              "parameter_index": 0}

    def __init__(self) -> None:
        self._holds: Dict[str, str] = {}
        self._slow: Dict[str, float] = {}
        self._held: Dict[str, threading.Event] = {}
        self.metrics: Dict[str, List[Dict[str, Any]]] = {}
        self._closing = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                trial = self.path.rsplit("/", 1)[-1]
                if "/api/v1/nni/trial-jobs/" in self.path:
                    body = {"trialJobId": trial, "hyperParameters": [json.dumps(outer.RECORD)]}
                else:  # the channel: the parameter record
                    body = {"type": "parameter", "parameter": json.dumps(outer.RECORD)}
                self._answer(body)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's name
                trial = self.path.rsplit("/", 1)[-1]
                length = int(self.headers.get("Content-Length") or 0)
                command = json.loads(self.rfile.read(length) or b"{}")
                if command.get("type") == "metric":
                    metric = json.loads(command["metric"])
                    with outer._lock:
                        outer.metrics.setdefault(trial, []).append(metric)
                        hold = outer._holds.get(trial) == metric.get("type")
                        if hold:
                            del outer._holds[trial]
                        late = outer._slow.get(trial, 0.0)
                    if hold:
                        outer._held[trial].set()
                        outer._closing.wait(60)  # taken, never answered
                        return
                    outer._closing.wait(late)  # taken (NNI has it), answered late
                self._answer(None)

            def _answer(self, body: Any) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the trial is gone
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def channel(self, trial_id: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/env/local-env/{trial_id}"

    def received(self, trial_id: str) -> List[Tuple[str, Dict[str, Any]]]:
        """``(type, value)`` of each metric the trial sent so far, in order of arrival
        (``PERIODICAL`` or ``FINAL``; the value as reported, ``{"default": ..., ...}``)."""
        with self._lock:
            metrics = list(self.metrics.get(trial_id, []))
        return [(str(m.get("type")), _value(m.get("value"))) for m in metrics]

    def slow(self, trial_id: str, seconds: float) -> None:
        """From now on answer each metric of the trial ``seconds`` after taking it (0: at
        once)."""
        with self._lock:
            self._slow[trial_id] = seconds

    def hold(self, trial_id: str, metric_type: str) -> threading.Event:
        with self._lock:
            self._holds[trial_id] = metric_type
            self._held[trial_id] = threading.Event()
            return self._held[trial_id]

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Dict[str, Any]:
    """A metric's value: NNI sends it as JSON text."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {"default": value}


def closed_port() -> int:
    """A localhost port nothing listens on (``hpo-tools kill`` finds no NNI there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- one case ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """What a case left: how the runner ended and what still runs or says it runs."""

    case: Case
    reached: bool = False
    returncode: Optional[int] = None
    elapsed: Optional[float] = None  # seconds from the signal to the runner's death
    sweep: str = ""  # what the orphan sweep said (SIGKILL cases)
    registry: List[str] = dataclasses.field(default_factory=list)  # "job_id state: message"
    registry_live: List[str] = dataclasses.field(default_factory=list)
    never_created: List[str] = dataclasses.field(default_factory=list)
    cloud_jobs: List[str] = dataclasses.field(default_factory=list)  # "id status"
    cloud_live: List[str] = dataclasses.field(default_factory=list)
    cloud_unrecorded: List[str] = dataclasses.field(default_factory=list)
    survivors: List[str] = dataclasses.field(default_factory=list)
    #: Processes of a local case alive after its runner's SIGKILL, before any sweep: the job
    #: must die with its runner by itself (parent-death signal), sweep or not.
    orphans: List[str] = dataclasses.field(default_factory=list)
    result: Dict[str, Any] = dataclasses.field(default_factory=dict)  # the trial's result.json
    stderr: str = ""
    log: str = ""
    seconds: float = 0.0  # the whole case
    error: str = ""  # the harness's own failure, if any (then ``reached`` is False)
    resumed: Optional[Resumed] = None  # a resume fault's three runs (None: not all ran)

    def describe(self) -> str:
        """Everything the case saw, for an assertion message."""
        return "\n".join([
            f"case {self.case.id}: reached={self.reached} returncode={self.returncode} "
            f"elapsed={self.elapsed}" + (f" harness error: {self.error}" if self.error else ""),
            f"registry: {self.registry}", f"cloud: {self.cloud_jobs}", f"sweep: {self.sweep}",
            f"survivors: {self.survivors}", f"before the sweep: {self.orphans}",
            f"result.json: {self.result}",
            "--- stderr ---", self.stderr[-3000:],
            "--- trial.log ---", self.log[-3000:]]
            + ([self.resumed.describe()] if self.resumed is not None else []))


@dataclasses.dataclass
class Run:
    """One run of a resume fault's trial, as it ended: ``nni`` is every metric the fake NNI
    manager had of the trial by then (``(type, value)``, all runs'), ``reported`` the trial's
    reported.json; ``first_step`` where its job started (local); ``written`` the steps on
    record then, read from what the jobs left (local: every event file; cloud: the pod log
    lines the platform relayed in this run)."""

    name: str
    first_step: int = 1
    returncode: Optional[int] = None
    nni: List[Tuple[str, Dict[str, Any]]] = dataclasses.field(default_factory=list)
    reported: Dict[str, Any] = dataclasses.field(default_factory=dict)
    result: Dict[str, Any] = dataclasses.field(default_factory=dict)
    stderr: str = ""
    written: List[int] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        return "\n".join([
            f"=== {self.name} run (job from step {self.first_step}): "
            f"returncode={self.returncode}, written {self.written}",
            f"NNI: {[(kind, value.get('default')) for kind, value in self.nni]}",
            f"reported.json: {self.reported}", f"result.json: {self.result}",
            "--- stderr ---", self.stderr[-1500:]])


@dataclasses.dataclass
class Resumed:
    """A resume fault's runs (:data:`RUNS`: earlier, fault, last) and what the last left.

    ``written``: the steps the jobs wrote, in order, read from what they left: the event files
    (local), or the pod log lines the platform relayed in any run (cloud).
    """

    runs: List[Run] = dataclasses.field(default_factory=list)
    written: List[int] = dataclasses.field(default_factory=list)
    registry_live: List[str] = dataclasses.field(default_factory=list)
    cloud_live: List[str] = dataclasses.field(default_factory=list)
    survivors: List[str] = dataclasses.field(default_factory=list)
    log: str = ""

    @property
    def nni(self) -> List[Tuple[str, Dict[str, Any]]]:
        """Every metric NNI got from the trial, all runs'."""
        return self.runs[-1].nni if self.runs else []

    def describe(self) -> str:
        return "\n".join([run.describe() for run in self.runs] + [
            f"written: {self.written}",
            f"left: {self.registry_live} {self.cloud_live} survivors: {self.survivors}",
            "--- trial.log ---", self.log[-3000:]])


class Faults:
    """The shared fixtures of a run: the fake cloud, the fake NNI manager, the environment.

    Args:
        root: an empty directory for the fake cloud and every case's files.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = root / "cloud"
        self.cloud.mkdir()
        self.nni = FakeNniManager()
        self.port = closed_port()
        self._assessor_lock = threading.Lock()
        self._held: Dict[str, threading.Event] = {}
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("NNI_", "HPO_TOOLS_"))}
        base.update({"PYTHONPATH": str(REPO), ENV_FAKE_CLOUD: str(self.cloud), **CREDENTIALS})
        self.env = base

    def plan(self, cases: List[Case]) -> None:
        """Write each cloud service's plan.json: one rule per case on it."""
        (self.cloud / ".maxcompute").mkdir()
        (self.cloud / ".maxcompute" / "plan.json").write_text(json.dumps(MC_PLAN))
        for platform in {c.platform for c in cases if c.platform not in (LOCAL, MAXCOMPUTE)}:
            fake = fake_service(platform, self.cloud)
            rules = []
            for c in (c for c in cases if c.platform == platform):
                rules += (resume_plans(c, fake.statuses) if c.resume
                          else [cloud_plan(c, fake.statuses)])
            fake.directory.mkdir(parents=True, exist_ok=True)
            (fake.directory / "plan.json").write_text(json.dumps({"rules": rules}, indent=1))

    def close(self) -> None:
        self.nni.close()
        for platform in ("dlc", "pai", "paiflow"):
            fake_service(platform, self.cloud).release()

    def _cloud_jobs(self, case: Case) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
        """``([{"job_id", "status"}], live statuses)`` of the case's jobs on its service: the
        fake's records; for MaxCompute its PAI instances (the command names the case)."""
        if case.platform != MAXCOMPUTE:
            fake = fake_service(case.platform, self.cloud)
            jobs = fake.named(case.token, "", None)
            return jobs, [j for j in jobs if j["status"] not in fake.statuses.finished]
        directory = self.cloud / ".maxcompute"
        ids = [line.get("instance_id") for line in map(json.loads, filter(
            None, _read(directory / "submissions.jsonl").splitlines()))
            if line.get("kind") == "xflow" and f"-Dname={case.token}" in line.get("command", "")]
        jobs = [{"job_id": i, "status": _json(directory / "instances" / f"{i}.json").get("state")}
                for i in ids]
        return jobs, [j for j in jobs if j["status"] == "running"]

    # -- a case ------------------------------------------------------------------------------

    def run(self, case: Case) -> Outcome:
        """Run ``case`` and observe what it left; never raises (a harness failure is
        ``error``, and the case counts as not reached)."""
        started = time.monotonic()
        outcome = Outcome(case)
        runner: Optional[subprocess.Popen] = None
        directory = self.root / case.token
        earlier: Optional[Run] = None
        collected = False
        try:
            if case.resume:
                earlier = self._earlier_run(case, directory)
            runner, ids = self._start(case, directory, "fault" if case.resume else "")
            self._inject(case, runner, ids, outcome)
            if case.signum == signal.SIGKILL:
                if case.platform == LOCAL:
                    outcome.orphans = _survivors(case.token, PROC_GRACE)
                outcome.sweep = self._sweep(case, ids)
            self._observe(case, ids, outcome)
            self._collect(outcome, directory, ids)  # before a last run rewrites them
            collected = True
            if earlier is not None and outcome.reached:
                outcome.resumed = self._last_run(case, directory, ids, outcome, earlier)
        except Exception as err:  # noqa: BLE001 - reported by the case's tests
            outcome.error = f"{type(err).__name__}: {err}"
            outcome.reached = False
        finally:
            if runner is not None and runner.poll() is None:
                runner.kill()  # the harness failed: leave nothing behind
                runner.wait()
            if runner is not None and not collected:
                self._collect(outcome, directory, ids)
            _kill_marked(case.token)
            outcome.seconds = time.monotonic() - started
        return outcome

    @staticmethod
    def _collect(outcome: Outcome, directory: Path, ids: Dict[str, str]) -> None:
        """The runner's stderr, trial.log and result.json, into ``outcome``."""
        outcome.stderr = _read(directory / "stderr.txt")
        outcome.log = _read(Path(ids["trial_dir"]) / "trial.log")
        outcome.result = _json(Path(ids["trial_dir"]) / "result.json")

    def _start(self, case: Case, directory: Path,
               run: str = "") -> Tuple[subprocess.Popen, Dict[str, str]]:
        """The runner of ``case``, started; the ids and directories it uses. ``run``: which
        of a resume fault's runs (:data:`RUNS`; the failpoint armed in "fault" only)."""
        (directory / "fp").mkdir(parents=True, exist_ok=True)
        if case.resume:
            first = 1 + max(_event_steps(self._trial_dir(case, directory)), default=0) // 100
            (directory / "trial.ini").write_text(resume_trial_file(case, run, first))
        else:
            (directory / "trial.ini").write_text(trial_file(case))
        exp_id, trial_id = ("faults", case.token) if case.nni else ("standalone", "standalone")
        nni_dir = directory / "nni" / exp_id
        trial_dir = nni_dir / "environments" / "local-env" / "trials" / trial_id
        env = dict(self.env, **{MARKER: case.token, "NNI_OUTPUT_DIR": str(trial_dir)})
        if case.failpoint and run in ("", "fault"):
            action = "kill" if case.signum == signal.SIGKILL else "pause"
            env.update({ENV_FAILPOINTS: f"{case.moment}={action}",
                        ENV_FAILPOINT_DIR: str(directory / "fp")})
        if case.nni:
            env.update(NNI_PLATFORM="local", NNI_EXP_ID=exp_id, NNI_TRIAL_JOB_ID=trial_id,
                       NNI_TRIAL_COMMAND_CHANNEL=self.nni.channel(trial_id))
        if case.moment in NNI_MOMENTS:
            self._held[case.token] = self.nni.hold(trial_id,
                                                   "FINAL" if case.job_ends else "PERIODICAL")
        if case.resume:
            self.nni.slow(trial_id, SLOW_ANSWER if run == "fault" and slow_report(case) else 0)
        suffix = f"-{run}" if run and run != "fault" else ""
        with open(directory / f"stdout{suffix}.txt", "wb") as out, \
                open(directory / f"stderr{suffix}.txt", "wb") as err:
            runner = subprocess.Popen(
                [PYTHON, "-m", "hpo_tools.run", "--config", "trial.ini",
                 "--exp_dir", str(directory / "exp"), "--interval", "0.2"],
                cwd=directory, env=env, stdout=out, stderr=err)
        ids = {"exp_id": exp_id, "trial_id": trial_id, "nni_dir": str(nni_dir),
               "exp_dir": str(directory / "exp" / exp_id), "trial_dir": str(trial_dir),
               "failpoints": str(directory / "fp")}
        return runner, ids

    def _reached(self, case: Case, ids: Dict[str, str]) -> Callable[[], bool]:
        """Whether the runner is at the case's moment now."""
        if case.failpoint:
            return (Path(ids["failpoints"]) / case.moment).exists
        if case.nni:
            return self._held[case.token].is_set
        fake = fake_service(case.platform, self.cloud)
        if case.moment == "create_hang_before":
            submissions = fake.directory / "submissions.jsonl"
            return lambda: case.token in _read(submissions)
        return lambda: bool(fake.named(case.token, "", None))  # create_hang

    def _inject(self, case: Case, runner: subprocess.Popen, ids: Dict[str, str],
                outcome: Outcome) -> None:
        """Bring the fault at its moment; the runner's end and how long it took to die."""
        if case.moment == "job_killed":
            outcome.reached = self._kill_job(case, runner, ids)
        if case.moment == CREATE_LOST or case.job_fault:  # the runner goes on alone
            try:
                outcome.returncode = runner.wait(timeout=60)
            except subprocess.TimeoutExpired:
                return
            if case.moment != "job_killed":  # the fault came if the job did
                outcome.reached = bool(self._jobs_of(case, ids))
            return
        reached = self._reached(case, ids)
        deadline = time.monotonic() + 60
        while not reached():
            if runner.poll() is not None or time.monotonic() > deadline:
                outcome.returncode = runner.poll()
                return  # never reached: the test says so
            time.sleep(_POLL)
        outcome.reached = True
        sent = time.monotonic()
        if not (case.failpoint and case.signum == signal.SIGKILL):  # that one kills itself
            runner.send_signal(case.signum)
        try:
            outcome.returncode = runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            outcome.returncode = None
        outcome.elapsed = time.monotonic() - sent

    @staticmethod
    def _trial_dir(case: Case, directory: Path) -> Path:
        return directory / "nni" / "faults" / "environments" / "local-env" / "trials" / case.token

    def _run_of(self, name: str, case: Case, directory: Path,
                returncode: Optional[int]) -> Run:
        """Run ``name`` of a resume fault, as it ended (``returncode``)."""
        trial_dir = self._trial_dir(case, directory)
        text = _read(directory / "trial.ini")
        first = text.split("--first-step ", 1)[1].split()[0] if "--first-step " in text else "1"
        suffix = "" if name == "fault" else f"-{name}"
        if case.platform == LOCAL:
            written = [step // 100 for step in _event_steps(trial_dir)]
        else:
            log = _read(trial_dir / "dlc-logs" / "cmd1.worker.log")
            written = [int(line.split()[1]) for line in log.splitlines()
                       if line.startswith("step ")]
        return Run(name, int(first), returncode, self.nni.received(case.token),
                   _json(trial_dir / "reported.json"), _json(trial_dir / "result.json"),
                   _read(directory / f"stderr{suffix}.txt"), written)

    def _earlier_run(self, case: Case, directory: Path) -> Run:
        """A resume fault's first run: NNI stops it (SIGINT) once it has two of its steps."""
        runner, _ = self._start(case, directory, "earlier")
        try:
            deadline = time.monotonic() + 60
            while sum(kind == "PERIODICAL" for kind, _ in self.nni.received(case.token)) < 2:
                if runner.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the earlier run never reported two steps (exit {runner.poll()}): "
                        + _read(directory / "stderr-earlier.txt"))
                time.sleep(_POLL)
            runner.send_signal(signal.SIGINT)
            returncode = runner.wait(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        if _survivors(case.token, PROC_GRACE):  # its job must be gone before the next run
            raise RuntimeError(f"the earlier run left {_survivors(case.token, 0)}")
        return self._run_of("earlier", case, directory, returncode)

    def _last_run(self, case: Case, directory: Path, ids: Dict[str, str], outcome: Outcome,
                  earlier: Run) -> Resumed:
        """After the fault: the trial run again (``resume=1``, same ids), its job to its end;
        every run as it ended and what the last left."""
        trial_dir = Path(ids["trial_dir"])
        if outcome.survivors:  # the procs check fails already; the last run must not meet them
            _kill_marked(case.token)
        resumed = Resumed([earlier, self._run_of("fault", case, directory, outcome.returncode)])
        runner, _ = self._start(case, directory, "last")
        try:
            returncode: Optional[int] = runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
            returncode = None
        resumed.runs.append(self._run_of("last", case, directory, returncode))
        resumed.log = _read(trial_dir / "trial.log")
        for run in resumed.runs:  # local: the last has them all; cloud: each its own
            resumed.written += [step for step in run.written if step not in resumed.written]
        after = Outcome(case)
        self._observe(case, ids, after)
        resumed.registry_live, resumed.cloud_live = after.registry_live, after.cloud_live
        resumed.survivors = after.survivors
        return resumed

    def _jobs_of(self, case: Case, ids: Dict[str, str]) -> List[Any]:
        """The case's jobs: on the fake service, else in the registry."""
        if case.platform != LOCAL:
            return list(self._cloud_jobs(case)[0])
        from hpo_tools.jobs import JobRegistry

        record = JobRegistry(Path(ids["exp_dir"])).load(ids["trial_id"])
        return list(record.jobs) if record is not None else []

    def _kill_job(self, case: Case, runner: subprocess.Popen, ids: Dict[str, str]) -> bool:
        """Once two steps are scored, the job ends from outside: its process SIGKILLed (the
        OOM killer, a user), or stopped on the service (not by hpo-tools)."""
        result = Path(ids["trial_dir"]) / "result.json"
        deadline = time.monotonic() + 60
        while len(_json(result).get("intermediate") or []) < 2:
            if runner.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
        if case.platform != LOCAL:
            fake = fake_service(case.platform, self.cloud)
            for job in fake.named(case.token, "", None):
                fake.finish(job["job_id"], fake.statuses.stopped)
            return True
        jobs = [pid for pid, cmdline in _marked(case.token)
                if cmdline.startswith(PYTHON) and str(JOB) in cmdline]
        for pid in jobs:  # the training process itself, not its shell
            os.kill(pid, signal.SIGKILL)
        return bool(jobs)

    def _sweep(self, case: Case, ids: Dict[str, str]) -> str:
        """The orphan sweep after a SIGKILL, from NNI's experiment directory: ``hpo-tools
        kill`` (NNI not answering) for odd cases, PAIAssessor's ``trial_end`` for even ones."""
        if case.index % 2:
            done = subprocess.run(
                [PYTHON, "-m", "hpo_tools", "kill", "--experiment", ids["exp_id"],
                 "--experiment-dir", ids["nni_dir"], "--port", str(self.port),
                 "--timeout", "10"],
                env=self.env, capture_output=True, text=True, timeout=60)
            return f"hpo-tools kill (exit {done.returncode}): {done.stdout}{done.stderr}"
        from hpo_tools.assessor import PAIAssessor

        with self._assessor_lock:  # one PAIAssessor at a time, as in NNI's dispatcher
            PAIAssessor(experiment_dir=ids["nni_dir"]).trial_end(ids["trial_id"], False)
        return "PAIAssessor.trial_end(success=False)"

    def _observe(self, case: Case, ids: Dict[str, str], outcome: Outcome) -> None:
        from hpo_tools.jobs import JobRegistry

        # Through NNI's directory: the link must lead there (the runner used --exp_dir).
        record = JobRegistry(Path(ids["nni_dir"])).load(ids["trial_id"])
        if record is None:  # no link: a runner stopped before it opened the registry
            record = JobRegistry(Path(ids["exp_dir"])).load(ids["trial_id"])
        entries = list(record.jobs) if record is not None else []
        cloud: List[Dict[str, Any]] = []
        if case.platform != LOCAL:
            cloud, live = self._cloud_jobs(case)
            outcome.cloud_jobs = [f"{j['job_id']} {j['status']}" for j in cloud]
            outcome.cloud_live = [f"{j['job_id']} {j['status']}" for j in live]
        cloud_ids = {j["job_id"] for j in cloud}
        for entry in entries:
            outcome.registry.append(f"{entry.job_id} {entry.state.value}: {entry.message}")
            if entry.state.is_finished:
                continue
            description = entry.description or {}
            if (case.platform != LOCAL and not description.get("cloud_id")
                    and not cloud_ids):  # a create that never made its job
                outcome.never_created.append(entry.job_id)
            else:
                outcome.registry_live.append(f"{entry.job_id} {entry.state.value}")
        recorded = {str((e.description or {}).get("cloud_id") or e.job_id) for e in entries
                    if e.state.is_finished}
        outcome.cloud_unrecorded = sorted(cloud_ids - recorded)
        outcome.survivors = _survivors(case.token, PROC_GRACE)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _event_steps(trial_dir: Path) -> List[int]:
    """The steps of the event files a local resume fault's job(s) wrote, every file's, in
    order (a record cut short by the job's death is not one)."""
    from hpo_tools.metrics.events import EventFileTail, event_file_sort_key, is_event_file

    directory = trial_dir / "model" / "eval_val"
    names = sorted((p.name for p in directory.glob("*") if is_event_file(p.name)),
                   key=event_file_sort_key)
    return [step for name in names  # ScalarEvent: (tag, value, step, wall time)
            for tag, _, step, _ in EventFileTail(str(directory / name)).poll() if tag == "auc"]


def _marked(token: str) -> List[tuple]:
    entry = f"{MARKER}={token}".encode()
    return [(pid, cmdline) for pid, cmdline, environ in live_processes() if entry in environ]


def _survivors(token: str, grace: float) -> List[str]:
    """The live processes of the case after up to ``grace`` s (none, when all is well)."""
    deadline = time.monotonic() + grace
    while True:
        found = _marked(token)
        if not found or time.monotonic() > deadline:
            return [f"{pid}: {cmdline[:160]}" for pid, cmdline in found]
        time.sleep(0.1)


def _kill_marked(token: str) -> None:
    """Whatever of the case still runs: killed, so that a failing case leaves nothing."""
    for pid, _ in _marked(token):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
