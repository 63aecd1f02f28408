"""`hpo-tools metrics`: one line per scored step, the final score last."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

from hpo_tools.cli import main
from tests.metrics.eventlib import append_events, event_file, scalar_event


def _job(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(
        path,
        scalar_event(100, auc=0.7, loss=0.4),
        scalar_event(200, auc=0.8, loss=0.2),
        scalar_event(300, auc=0.75, loss=0.3),
    )
    return tmp_path


def test_prints_each_step_then_the_final_score(tmp_path, capsys):
    code = main(["metrics", str(_job(tmp_path)), "--metric", "auc=1", "--metric", "loss=-1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    # Three scored steps, then the final (last step by default).
    assert [line.split()[1] for line in lines[:3]] == ["100", "200", "300"]
    assert lines[-1].startswith("final  step 300  score 0.45")


def test_json_lines_with_best_mode(tmp_path, capsys):
    code = main(
        [
            "metrics",
            str(_job(tmp_path)),
            "--metric",
            "auc=1",
            "--metric",
            "loss=-1",
            "--mode",
            "best",
            "--json",
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    # Every line is JSON; the last one is the final, here the best step (0.8 - 0.2).
    assert [r["step"] for r in records[:3]] == [100, 200, 300]
    assert records[-1]["final"] is True and records[-1]["step"] == 200
    assert abs(records[-1]["score"] - 0.6) < 1e-6


def test_stdout_regex_containing_equals_sign_is_split_at_the_last_one(tmp_path, capsys):
    log = tmp_path / "train.log"
    log.write_text("validation: accuracy=0.91\nvalidation: accuracy=0.93\n")
    code = main(
        ["metrics", str(log), "--type", "stdout", "--metric", r"accuracy=([0-9.]+)=1", "--json"]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    # The key is the regex before the last '='; steps are numbered by evaluation.
    assert records[-1]["values"] == {"accuracy=([0-9.]+)": 0.93}
    assert records[-1]["step"] == 2


def test_missing_metric_is_exit_2_with_required_and_seen(tmp_path, capsys):
    code = main(["metrics", str(_job(tmp_path)), "--metric", "auc_is_like=1"])
    err = capsys.readouterr().err
    # A user error: one line, exit 2, naming what was required and seen.
    assert code == 2
    assert "required `auc_is_like`, seen `auc`, `loss`" in err


def test_bad_weight_is_a_config_error(tmp_path, capsys):
    code = main(["metrics", str(tmp_path), "--metric", "auc=high"])
    assert code == 2
    assert "--metric 'auc=high': weight 'high' is not a number" in capsys.readouterr().err


def test_metric_dict_option_takes_json(tmp_path, capsys):
    code = main(["metrics", str(_job(tmp_path)), "--metric-dict", '{"auc": 2}', "--mode", "avg"])
    final = capsys.readouterr().out.splitlines()[-1]
    assert code == 0
    # avg of 2*auc over the three steps.
    assert "score 1.5" in final


def test_follow_with_timeout_prints_steps_and_final(tmp_path, capsys):
    code = main(
        [
            "metrics",
            str(_job(tmp_path)),
            "--metric",
            "auc=1",
            "--follow",
            "--interval",
            "0.05",
            "--timeout",
            "0.3",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    # Following stops at the timeout and still ends with the final line.
    assert len(lines) == 4 and lines[-1].startswith("final")


def test_several_sources_name_the_source_on_each_line(tmp_path, capsys):
    a = _job(tmp_path / "a")
    b = _job(tmp_path / "b")
    code = main(["metrics", str(a), str(b), "--metric", "auc=1", "--source-mode", "avg"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].startswith("source 0  step 100")
    assert lines[3].startswith("source 1  step 100")


def test_unknown_type_names_the_option_and_suggests(tmp_path, capsys):
    code = main(["metrics", str(tmp_path), "--type", "jsn", "--metric", "auc=1"])
    err = capsys.readouterr().err
    # The message names the CLI option, not the INI key, and suggests the close type.
    assert code == 2
    assert "--type: unknown source type 'jsn'" in err
    assert "did you mean 'json'" in err


def test_ctrl_c_during_follow_prints_every_step_whole_then_the_final(tmp_path):
    steps = 3000  # ~200 KB of output: more than a pipe holds, so the CLI blocks mid-batch
    path = event_file(tmp_path, 100)
    append_events(path, *(scalar_event(s, auc=s / steps) for s in range(1, steps + 1)))
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools", "metrics", str(tmp_path), "--metric", "auc=1"]
        + ["--follow", "--interval", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Undo an inherited SIG_IGN (background jobs), so Python installs its Ctrl-C handling.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    killer = threading.Timer(60, process.kill)  # a hung CLI fails the test instead of blocking
    killer.start()
    try:
        first = process.stdout.readline()  # it is printing the first poll's batch
        time.sleep(0.5)  # the pipe is full now: the CLI is blocked in print()
        process.send_signal(signal.SIGINT)
        # Read through the same buffered pipe object as readline() did (communicate() would
        # skip what that buffer already holds).
        out = first + process.stdout.read()
        err = process.stderr.read()
        process.wait()
    finally:
        killer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    lines = out.splitlines()
    # Ctrl-C ends following cleanly: exit 0, no traceback, no step lost or cut in half (the
    # steps of the batch being printed were already marked reported), and the final line last.
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopped following" in err
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["step", str(s)] for s in range(1, steps + 1)
    ]
    assert lines[-1] == f"final  step {steps}  score 1  auc=1"
