"""CFO and BlendSearch (hpo_tools.cost_frugal) as NNI custom tuners, through real NNI.

Four fast Local trials each (the runner, `python -m hpo_tools.run`, printing a score): the
first trial runs the base config's own value (`base_config`, relative to trialCodeDirectory, read
in NNI's dispatcher), and every trial's final result reaches the tuner with its measured cost.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex

pytest.importorskip("flaml")
pytest.importorskip("optuna")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

KEY = "model_config.dropout"
BASE_VALUE = 0.2

PIPELINE = f"""\
model_config {{
  dropout: {BASE_VALUE}
}}
"""

# Best at 0.7; the score is printed on stdout and read by the runner's stdout source, once per
# "training step": 1 + int(10 x) steps, so a higher x costs more steps.
TRIAL_INI = """\
[platform_config]
name=Local
cmd1={python} -c "x = ${{{key}}}; [print('score=%f' % (1 - abs(x - .7))) for _ in {steps}]"

[metric_config]
metric_type=stdout
metric_dict={{"score=([0-9.eE+-]+)": 1}}
optimize_mode=maximize
"""

CONFIG = """\
searchSpace: {{"{key}": {{_type: uniform, _value: [0, 1]}}}}
trialCommand: {python} -m hpo_tools.run --config trial.ini
trialCodeDirectory: .
trialConcurrency: 1
maxTrialNumber: 4
experimentWorkingDirectory: {work}
tuner:
  codeDirectory: {core}
  className: hpo_tools.cost_frugal.{tuner}
  classArgs: {{optimize_mode: maximize, base_config: pipeline.config, cost: {cost}, seed: 5}}
trainingService:
  platform: local
"""


@pytest.mark.parametrize(("tuner", "cost"), [("CfoTuner", "seconds"),
                                             ("BlendSearchTuner", "steps")])
def test_cost_frugal_tuner_starts_at_the_base_config_and_runs_every_trial(
        tuner, cost, tmp_path, free_port):
    (tmp_path / "pipeline.config").write_text(PIPELINE)
    (tmp_path / "trial.ini").write_text(TRIAL_INI.format(python=sys.executable, key=KEY,
                                                        steps="range(1 + int(10 * x))"))
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(python=sys.executable, key=KEY, work=tmp_path / "nni",
                                    core=REPO / "core", tuner=tuner, cost=cost))
    result = ex.run_experiment(config, port=free_port, timeout=120, poll_interval=1.0,
                               checker=None)
    assert result.status == "DONE" and not result.timed_out, result.errors
    assert result.succeeded == 4, ex.format_summary(result.snapshot, result.export)
    runs = sorted((view.run for view in result.snapshot.trials),
                  key=lambda run: run.parameter_id)
    # The first point is the user's config, exactly; the tuner then moved away from it.
    assert runs[0].params == {KEY: BASE_VALUE}
    assert len({run.params[KEY] for run in runs}) == 4
    assert all(0 <= run.params[KEY] <= 1 for run in runs)
    # Each final result reached the tuner with a measured cost in the configured unit.
    log = (result.files.root / "log" / "dispatcher.log").read_text(errors="replace")
    costs = {m.group(1): float(m.group(2)) for m in re.finditer(
        rf"trial (\w+) \(parameter id \d+\): score \S+, cost (\S+) {cost}", log)}
    assert len(costs) == 4 and f"no {cost} measured" not in log, log[-3000:]
    for run in runs:
        if cost == "steps":  # the trial's own last step, read from its result.json
            assert costs[run.trial_id] == 1 + int(10 * run.params[KEY]), (run, costs)
        else:
            assert costs[run.trial_id] > 0
