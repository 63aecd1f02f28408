"""``E/report.png`` (hpo_tools.experiment.report): drawn from an experiment directory laid out as
the trial runner and PAIAssessor leave it (see tests/test_experiment.py), without NNI.

The picture's content is asserted through the figure's artists and the returned
:class:`ReportFigure`, never through pixels.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpo_tools.cli import main
from hpo_tools.experiment.progress import build_snapshot
from hpo_tools.experiment.records import ExperimentFiles
from hpo_tools.experiment.report import (
    MISSING_MATPLOTLIB,
    draw_report,
    try_write_report,
    write_report,
)
from tests.test_experiment import write_decisions, write_trial

pytest.importorskip("matplotlib")  # the `report` extra, installed by `make install`

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = 1_700_000_000.0


def _timed(trial_dir: Path, start: float, end: float) -> None:
    """Set the times the runner's writes would have left: params.json at the start,
    result.json at the end."""
    os.utime(trial_dir / "params.json", (start, start))
    os.utime(trial_dir / "result.json", (end, end))


@pytest.fixture
def exp_root(tmp_path: Path) -> Path:
    """An experiment of five trials: two succeeded (B the best), one stopped by the assessor at
    its second report, one failed, one cancelled without a decision."""
    root = tmp_path / "work" / "rpt12345"
    root.mkdir(parents=True)
    _timed(write_trial(root, "A", {"lr": 0.01, "dim": 8}, [0.70, 0.74, 0.76]), START, START + 60)
    _timed(write_trial(root, "B", {"lr": 0.003, "dim": 16}, [0.72, 0.78, 0.81]),
           START + 10, START + 400)
    _timed(write_trial(root, "C", {"lr": 0.1, "dim": 8}, [0.60, 0.61], status="cancelled"),
           START + 20, START + 200)
    _timed(write_trial(root, "D", {"lr": 0.2, "dim": 4}, [0.5], status="failed"),
           START + 30, START + 90)
    _timed(write_trial(root, "E", {"lr": 0.05, "dim": 4}, [0.65], status="cancelled"),
           START + 40, START + 500)
    write_decisions(root, '{"trial_id": "C", "step": 200, "rule": "median"}')
    return root


def _snapshot(root: Path, mode: str = "maximize"):
    return build_snapshot(ExperimentFiles(root), status="DONE", optimize_mode=mode)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _gids(figure) -> set[str]:
    return {artist.get_gid() for artist in figure.findobj() if artist.get_gid()}


def test_report_is_a_png_of_sane_size(exp_root):
    path = write_report(_snapshot(exp_root), exp_root / "report.png")
    assert path == exp_root / "report.png"
    data = path.read_bytes()
    width, height = _png_size(data)
    # Two plot panels side by side over a parameter table: wide, readable, not huge.
    assert 1000 <= width <= 2000 and 600 <= height <= 1600, (width, height)
    assert 20_000 < len(data) < 2_000_000
    # Written whole through a temp file + rename: nothing else is left beside it.
    assert sorted(p.name for p in exp_root.iterdir() if p.is_file()) == ["report.png"]


def test_each_trial_is_drawn_as_what_became_of_it(exp_root):
    drawn = draw_report(_snapshot(exp_root))
    kinds = {t.trial_id: t.kind for t in drawn.trials}
    assert kinds == {"A": "succeeded", "B": "best", "C": "stopped by assessor",
                     "D": "failed", "E": "cancelled"}
    gids = _gids(drawn.figure)
    # Every trial with a reported score has its line; the assessor-stopped one gets its stop mark.
    assert {f"trial:{t}" for t in "ABCDE"} <= gids
    assert "assessor-stop:C" in gids
    assert not any(g.startswith("assessor-stop:") and g != "assessor-stop:C" for g in gids)
    assert "best-final:B" in gids and "best-params" in gids and "best-so-far" in gids


def test_assessor_stop_mark_sits_at_the_last_report_of_the_stopped_trial(exp_root):
    figure = draw_report(_snapshot(exp_root)).figure
    (mark,) = [a for a in figure.findobj() if a.get_gid() == "assessor-stop:C"]
    # C reported 0.60 at step 100 and 0.61 at step 200, then the assessor stopped it.
    assert list(mark.get_xdata()) == [200] and list(mark.get_ydata()) == [0.61]
    assert mark.get_marker() == "x"
    (line,) = [a for a in figure.findobj() if a.get_gid() == "trial:C"]
    assert line.get_linestyle() == "--"


def test_failed_and_cancelled_trials_are_grey_and_the_best_stands_out(exp_root):
    from matplotlib.colors import to_rgb

    figure = draw_report(_snapshot(exp_root)).figure
    lines = {a.get_gid(): a for a in figure.findobj() if (a.get_gid() or "").startswith("trial:")}
    for trial_id in "DE":
        red, green, blue = to_rgb(lines[f"trial:{trial_id}"].get_color())
        assert red == green == blue, trial_id  # grey
    assert lines["trial:B"].get_linewidth() > lines["trial:A"].get_linewidth()


def test_best_so_far_is_drawn_against_wall_time_from_the_records(exp_root):
    drawn = draw_report(_snapshot(exp_root))
    assert drawn.time_axis == "wall time"
    ends = {t.trial_id: t.end_time for t in drawn.trials}
    # Counted from the first trial's params.json to each result.json.
    assert ends["A"] == pytest.approx(60) and ends["B"] == pytest.approx(400)
    (line,) = [a for a in drawn.figure.findobj() if a.get_gid() == "best-so-far"]
    # A ends first at 0.76, then B at 0.81: the best so far steps up when B ends (400 s,
    # drawn in minutes as the span is over 3 minutes).
    assert "wall time (min)" in drawn.figure.axes[1].get_xlabel()
    assert list(line.get_xdata()) == pytest.approx([1.0, 400 / 60])
    assert list(line.get_ydata()) == pytest.approx([0.76, 0.81])


def test_best_so_far_follows_the_minimize_direction(exp_root):
    drawn = draw_report(_snapshot(exp_root, "minimize"))
    (line,) = [a for a in drawn.figure.findobj() if a.get_gid() == "best-so-far"]
    assert list(line.get_ydata()) == pytest.approx([0.76, 0.76])  # B's 0.81 is worse
    assert {t.trial_id: t.kind for t in drawn.trials}["A"] == "best"


def test_without_times_best_so_far_is_drawn_against_trial_order_and_says_so(exp_root):
    for trial_dir in ExperimentFiles(exp_root).trial_dirs().values():
        for name in ("params.json", "result.json"):
            os.utime(trial_dir / name, (START, START))  # as after a copy that lost the times
    drawn = draw_report(_snapshot(exp_root))
    assert drawn.time_axis == "trial order"
    time_ax = drawn.figure.axes[1]
    assert "no end times" in time_ax.get_xlabel()


def test_steps_that_restart_are_drawn_against_the_report_number(exp_root):
    # A finetune trial: one report per day, each day's step counted from its own start.
    trial_dir = write_trial(exp_root, "F", {"lr": 0.01}, [0.7, 0.72])
    result = trial_dir / "result.json"
    result.write_text(result.read_text().replace('"step": 200', '"step": 100'))
    drawn = draw_report(_snapshot(exp_root))
    assert drawn.step_axis == "report number"
    assert "report number" in drawn.figure.axes[0].get_xlabel()


def test_parameters_of_the_best_trial_are_in_the_table(exp_root):
    figure = draw_report(_snapshot(exp_root)).figure
    (table,) = [a for a in figure.findobj() if a.get_gid() == "best-params"]
    texts = [cell.get_text().get_text() for cell in table.get_celld().values()]
    assert "lr" in texts and "0.003" in texts and "dim" in texts and "16" in texts
    assert "experiment rpt12345 (DONE): maximize, 5 trials" in figure.get_suptitle()


def test_an_experiment_without_a_succeeded_trial_still_gets_a_report(tmp_path):
    root = tmp_path / "noluck01"
    write_trial(root, "A", {"lr": 0.1}, [0.5, 0.4], status="failed")
    path = write_report(_snapshot(root), root / "report.png")
    assert path is not None and _png_size(path.read_bytes())[0] > 0


def test_a_failure_to_draw_is_one_warning_and_no_file(exp_root, caplog):
    target = exp_root / "report.png"
    target.mkdir()  # a directory where the file should go: the write fails
    assert try_write_report(_snapshot(exp_root), target) is None
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "report.png not written" in warnings[0].getMessage()
    assert target.is_dir()


# ----------------------------------------------------------------------- without matplotlib

_BLOCK_MATPLOTLIB = """\
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Block())
"""


def test_without_matplotlib_one_notice_and_no_file(exp_root, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCK_MATPLOTLIB)
    script = textwrap.dedent(f"""
        import logging
        logging.basicConfig(format="%(message)s")
        from pathlib import Path
        from hpo_tools.experiment.progress import build_snapshot
        from hpo_tools.experiment.records import ExperimentFiles
        from hpo_tools.experiment.report import write_report
        snapshot = build_snapshot(ExperimentFiles(Path({str(exp_root)!r})))
        print("returned", write_report(snapshot, {str(exp_root / 'report.png')!r}))
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(Path(__file__).parents[1])])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "returned None"
    assert done.stderr.strip().splitlines() == [MISSING_MATPLOTLIB]
    assert not (exp_root / "report.png").exists()


def test_cli_best_without_matplotlib_still_exports_and_exits_0(exp_root, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCK_MATPLOTLIB)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(Path(__file__).parents[1])])
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "experiment", "best", exp_root.name,
         "--experiment-dir", str(exp_root)],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "report:" not in done.stdout
    assert [line for line in done.stderr.splitlines() if "report.png" in line] == [
        f"WARNING hpo_tools.experiment.report: {MISSING_MATPLOTLIB}"]
    assert (exp_root / "best" / "best_params.json").is_file()
    assert not (exp_root / "report.png").exists()


# ----------------------------------------------------------------------- CLI


def test_cli_best_writes_the_report_and_prints_its_path(exp_root, capsys):
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"report: {exp_root / 'report.png'}" in out.splitlines()
    assert _png_size((exp_root / "report.png").read_bytes())[0] > 0


def test_cli_best_with_no_succeeded_trial_draws_the_report_and_exits_1(tmp_path, capsys):
    root = tmp_path / "noluck02"
    write_trial(root, "A", {"lr": 0.1}, [0.5], status="failed")
    code = main(["experiment", "best", root.name, "--experiment-dir", str(root)])
    assert code == 1
    assert f"report: {root / 'report.png'}" in capsys.readouterr().out.splitlines()
