"""hpo_tools/failpoints.py: armed only by the environment, ``pause`` hands the signal to the
handler of the moment, ``kill`` dies by SIGKILL, every failpoint fires once. Real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools.failpoints import ENV_FAILPOINT_DIR, ENV_FAILPOINTS, parse

REPO = Path(__file__).resolve().parents[2]

# A process that reaches failpoint "submit" twice, with SIGINT/SIGTERM handled as the runner's
# SignalGuard does (a flag), and says what happened.
GUARDED = """
import signal, sys
from hpo_tools.failpoints import failpoint
got = []
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda s, f: got.append(s))
failpoint("submit")
print("after the first", got, flush=True)
failpoint("submit")
print("after the second", got, flush=True)
"""
# The same without handlers of its own: Python's KeyboardInterrupt, SIGTERM's default action.
BARE = """
from hpo_tools.failpoints import failpoint
try:
    failpoint("read_trial_file")
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
print("went on", flush=True)
"""


def _start(tmp_path: Path, code: str, armed: str) -> subprocess.Popen:
    env = {"PYTHONPATH": str(REPO), ENV_FAILPOINTS: armed, ENV_FAILPOINT_DIR: str(tmp_path)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"never paused: {process.communicate()}")
        time.sleep(0.01)


def test_parse_reads_name_action_pairs_and_refuses_unknown_ones():
    assert parse("submit=pause, training=kill,") == {"submit": "pause", "training": "kill"}
    assert parse("") == {}
    # A typo must not arm nothing silently in a test that waits for the pause.
    with pytest.raises(ValueError, match="submitt=pause"):
        parse("submitt=pause")
    with pytest.raises(ValueError, match="sleep"):
        parse("submit=sleep")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_pause_hands_the_signal_to_the_handler_of_the_moment_and_fires_once(tmp_path, signum):
    process = _start(tmp_path, GUARDED, "submit=pause")
    _wait_for(tmp_path / "submit", process)
    # The marker holds the pid of the paused process.
    assert (tmp_path / "submit").read_text() == str(process.pid)
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    # The process's own handler got the signal, and the code went on from the failpoint...
    assert f"after the first [{int(signum)}]" in out, err
    # ...past the second call of the same failpoint without pausing again.
    assert f"after the second [{int(signum)}]" in out, err
    assert process.returncode == 0, err


def test_a_pause_before_any_handler_lets_sigint_raise_keyboard_interrupt(tmp_path):
    process = _start(tmp_path, BARE, "read_trial_file=pause")
    _wait_for(tmp_path / "read_trial_file", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    # As Ctrl-C at that moment would: KeyboardInterrupt, raised from the failpoint.
    assert out.splitlines() == ["KeyboardInterrupt"], err
    # Uncaught, Python ends the process by SIGINT itself (as the runner's entry point does).
    assert process.returncode == -signal.SIGINT, err


def test_a_pause_before_any_handler_dies_by_sigterm(tmp_path):
    process = _start(tmp_path, BARE, "read_trial_file=pause")
    _wait_for(tmp_path / "read_trial_file", process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    # SIGTERM's default action, as without the pause: dead by it, nothing printed after.
    assert process.returncode == -signal.SIGTERM, err
    assert out == ""


def test_kill_leaves_its_marker_and_dies_by_sigkill(tmp_path):
    process = _start(tmp_path, BARE, "read_trial_file=kill")
    out, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL, err
    assert (tmp_path / "read_trial_file").exists()
    assert out == ""


def test_an_unarmed_failpoint_does_nothing(tmp_path):
    # Armed for another moment (and the environment read once): this one is a no-op.
    process = _start(tmp_path, BARE, "final_report=kill")
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (0, "went on\n"), err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_arms_nothing_and_says_so(tmp_path):
    process = _start(tmp_path, BARE, "read_trial_file=explode")
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out) == (0, "went on\n"), err
    assert "read_trial_file=explode" in err and "no failpoint armed" in err
