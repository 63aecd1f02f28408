"""Helpers for the trial-runner tests: trial files that run tests/trial/fake_train.py."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import live_processes

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")
PYTHON = shlex.quote(sys.executable)
TRAIN = f"{PYTHON} {shlex.quote(str(FAKE_TRAIN))}"

PIPELINE = """\
train_config {
  optimizer_config {
    adam_optimizer {
      learning_rate {
        constant_learning_rate {
          learning_rate: 0.001
        }
      }
    }
  }
  num_steps: 100
}
data_config {
  batch_size: 256
}
"""
REPO = Path(__file__).resolve().parents[2]
# Metrics of fake_train.py: its TensorBoard event files under the trial's model directory.
SUMMARY = (
    "[metric_config]\nmetric_type=summary\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
    'metric_dict={"auc": 1}\n'
)


def survivors(marker: str) -> list[str]:
    """Live processes whose command line holds ``marker`` (a test's own tmp_path)."""
    return [f"{pid}: {cmdline[:160]}" for pid, cmdline, _ in live_processes()
            if marker in cmdline]


def runner_env() -> dict:
    """The environment of a runner started as a subprocess: this checkout on the path, and
    nothing of an NNI trial this test may itself run in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["PYTHONPATH"] = str(REPO)
    return env


LR_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "constant_learning_rate.learning_rate"
)

SUMMARY_METRIC = """
[metric_config]
metric_type=summary
metric_source=${NNI_OUTPUT_DIR}/model/eval_val
metric_dict={"auc": 1}
optimize_mode=maximize
"""
"""A trial file's [metric_config]: the fake trainer's evaluation events, scored by auc."""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A small training config with a learning rate the fake trainer reads."""
    path = tmp_path / "pipeline.config"
    path.write_text(PIPELINE)
    return path


@pytest.fixture
def write_trial(tmp_path: Path):
    """Write a trial file into tmp_path and return its path."""

    def write(text: str, name: str = "trial.ini") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def _no_nni_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A test run inside an NNI trial (or with these set) must not think it is one.
    for name in ("NNI_PLATFORM", "NNI_OUTPUT_DIR", "NNI_LOG_DIRECTORY", "NNI_EXP_ID",
                 "NNI_TRIAL_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
