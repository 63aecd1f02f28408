"""Helpers for the trial-runner tests: trial files that run tests/trial/fake_train.py."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

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
LR_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "constant_learning_rate.learning_rate"
)


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
