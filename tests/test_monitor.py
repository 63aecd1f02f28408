"""[monitor_config]: DingTalk robot messages, tested against a real HTTP server on localhost."""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from pathlib import Path

import pytest

from hpo_tools import monitor
from hpo_tools.errors import ConfigError
from hpo_tools.testing.platform import FakePlatform, registered
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.settings import parse_trial_text

TOKEN = "robotToken0123456789"


class Robot:
    """A local stand-in for DingTalk's robot endpoint: records each POST; can be slow or fail."""

    def __init__(self, delay: float = 0.0, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        robot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                robot.bodies.append(json.loads(self.rfile.read(length)))
                robot.paths.append(self.path)
                time.sleep(delay)
                answer = b'{"errcode": 0, "errmsg": "ok"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = (f"http://127.0.0.1:{self.server.server_address[1]}/robot/send"
                    f"?access_token={TOKEN}")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def robot():
    server = Robot()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fake_registered():
    with registered():
        yield


def _trial(url: str, command: str) -> str:
    return (f"[platform_config]\nname=Fake\ncmd1={command}\n"
            '[metric_config]\nmetric_type=fake\nmetric_source=eval\nmetric_dict={"auc": 1}\n'
            f"[monitor_config]\nurl={url}\nkeyword=hpo\nat_mobiles=['13800000000']\n"
            "is_at_all=False\n")


def _logged(caplog, text: str, within: float = 10.0) -> int:
    """How often ``text`` was logged, waiting for it (a post's thread may log it a moment after
    the trial returned, on a loaded machine)."""
    deadline = time.monotonic() + within
    while text not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    return caplog.text.count(text)


def _run(tmp_path: Path, text: str, trial_id: str):
    variables = TrialVariables("exp1", trial_id, "/out", {"lr": 0.01})
    plan = parse_trial_text(text, source="trial.ini", variables=variables, environ={})
    reporter = ConsoleReporter({"lr": 0.01}, experiment_id="exp1", trial_id=trial_id,
                               stream=io.StringIO())
    paths = resolve_paths("exp1", trial_id, exp_dir=tmp_path / "exp", environ={})
    return run_plan(plan, reporter, TrialContext("exp1", trial_id, {"lr": 0.01}, paths),
                    platform=FakePlatform(), interval=0.02, stderr=io.StringIO())


def test_a_new_best_and_a_failure_are_sent_a_worse_score_is_not(tmp_path, robot) -> None:
    assert _run(tmp_path, _trial(robot.url, "emit eval step=1 auc=0.7"), "t1").status == "succeeded"
    assert _run(tmp_path, _trial(robot.url, "emit eval step=1 auc=0.6"), "t2").status == "succeeded"
    assert _run(tmp_path, _trial(robot.url, "fail out of memory"), "t3").status == "failed"
    # The first trial is the best so far; the worse second one is not news; the failure is.
    assert len(robot.bodies) == 2
    best, failed = robot.bodies
    # The robot API's text message, the keyword first, the people to mention.
    assert best["msgtype"] == "text"
    assert best["text"]["content"].startswith("hpo hpo-tools: new best score 0.7 (trial t1")
    assert best["at"] == {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": False}
    assert failed["text"]["content"] == (
        "hpo hpo-tools: trial t3 of experiment exp1 failed: cmd1 failed: out of memory")
    assert robot.paths[0] == f"/robot/send?access_token={TOKEN}"
    # The token is a secret: no file the runs wrote holds it.
    for path in (tmp_path / "exp").rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path


def test_a_hanging_webhook_neither_fails_nor_holds_up_the_trial(tmp_path, caplog,
                                                                monkeypatch) -> None:
    slow = Robot(delay=30)
    monkeypatch.setattr(monitor, "DEFAULT_TIMEOUT", 0.5)  # a post's bound (3 s in use)
    try:
        started = time.monotonic()
        with caplog.at_level("WARNING"):
            outcome = _run(tmp_path, _trial(slow.url, "emit eval step=1 auc=0.7"), "t1")
        took = time.monotonic() - started
    finally:
        slow.close()
    # The trial's own result stands; the post gave up after its timeout; said once, masked.
    assert outcome.status == "succeeded" and took < 5, took
    assert _logged(caplog, "[monitor_config] message not delivered") == 1
    assert TOKEN not in caplog.text


def test_a_refusing_webhook_is_logged_once_and_the_trial_goes_on(tmp_path, caplog) -> None:
    failing = Robot(status=500)
    try:
        with caplog.at_level("WARNING"):
            outcome = _run(tmp_path, _trial(failing.url, "fail boom"), "t1")
    finally:
        failing.close()
    assert outcome.status == "failed" and outcome.message == "cmd1 failed: boom"
    assert _logged(caplog, "[monitor_config] message not delivered") == 1


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("keyword=hpo", "keywrd=hpo", r"\[monitor_config\] keywrd: unknown key .*'keyword'"),
        ("url=http", "url=ftp", r"\[monitor_config\] url: expected the robot's webhook"),
        ("at_mobiles=['13800000000']", "at_mobiles=['138", r"\[monitor_config\] at_mobiles: "
                                                           r"expected a list"),
    ],
)
def test_bad_monitor_settings_are_one_line_errors(replace, by, message) -> None:
    text = _trial(f"http://127.0.0.1:9/robot/send?access_token={TOKEN}", "echo x")
    assert replace in text
    with pytest.raises(ConfigError, match=message) as info:
        parse_trial_text(text.replace(replace, by), source="trial.ini",
                         variables=TrialVariables("e", "t", "/o", {}), environ={})
    assert TOKEN not in str(info.value)
