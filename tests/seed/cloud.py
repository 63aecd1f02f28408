"""What the seed-file tests need around the fake cloud (``HPO_TOOLS_FAKE_CLOUD``).

The fake cloud records PAI jobs and answers for them (docs/running-trials.md); nothing trains.
:class:`EvalWriter` plays EasyRec's part: for every recorded job it writes the evaluation event
files EasyRec would write into the job's ``-Dmodel_dir`` (``<model_dir>/eval_val/``), in the
fake cloud's OSS directory, so the trial's metric source has something to read.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

from tests.metrics.eventlib import append_events, event_file, scalar_event, version_event

SEED = Path(__file__).resolve().parent
KEY_ID = "LTAIseedFixtureKeyId"
KEY_SECRET = "seedFixtureKeySecret0123456789"

_MODEL_DIR = re.compile(r"""-Dmodel_dir=['"]?(oss://[^'"\s]+)""")


def copy_seed(name: str, destination: Path) -> Path:
    """Copy ``tests/seed/<name>`` to ``destination``; return it."""
    shutil.copytree(SEED / name, destination)
    return destination


def oss_path(cloud: Path, url: str) -> Path:
    """The fake cloud's file for ``oss://bucket/key``."""
    assert url.startswith("oss://"), url
    return cloud / url[len("oss://"):].rstrip("/")


def training_config(cloud: Path, url: str) -> Path:
    """Put the base training config a seed trial file names on OSS into the fake cloud: the
    repository's sample config; a finetune config (name holding ``finetune``) with a constant
    learning rate, as finetune configs have (the seed's search key names it)."""
    text = (SEED.parents[1] / "samples" / "pipeline_finetune.config").read_text()
    if "finetune" in url:
        start = text.index("        exponential_decay_learning_rate {")
        end = text.index("        }\n", start) + len("        }\n")
        text = (text[:start] + "        constant_learning_rate {\n          learning_rate: 1e-6\n"
                "        }\n" + text[end:])
    else:
        text = (SEED.parents[1] / "samples" / "pipeline.config").read_text()
    path = oss_path(cloud, url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def submissions(cloud: Path) -> list[dict]:
    """The fake MaxCompute's record of every job submitted so far."""
    path = cloud / ".maxcompute" / "submissions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_eval_events(cloud: Path, model_dir: str, **metrics: float) -> Path:
    """Event files as EasyRec's evaluation writes them: two evaluations (steps 100, 200)."""
    directory = oss_path(cloud, model_dir) / "eval_val"
    directory.mkdir(parents=True, exist_ok=True)
    path = event_file(directory, 1_700_000_000)
    half = {name: value - 0.01 for name, value in metrics.items()}
    append_events(path, version_event(), scalar_event(100, **half), scalar_event(200, **metrics))
    return path


class EvalWriter:
    """A thread writing each new job's evaluation events as soon as the job is recorded."""

    def __init__(self, cloud: Path, **metrics: float) -> None:
        self.cloud, self.metrics = cloud, metrics
        self.model_dirs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EvalWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for job in submissions(self.cloud)[len(self.model_dirs):]:
                found = _MODEL_DIR.search(job.get("command", ""))
                model_dir = found.group(1) if found else ""
                if model_dir:
                    write_eval_events(self.cloud, model_dir, **self.metrics)
                self.model_dirs.append(model_dir)
