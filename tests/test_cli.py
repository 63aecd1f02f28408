from __future__ import annotations

import pytest

from hpo_tools import __version__
from hpo_tools.cli import main


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's version action exits 0 after printing.
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
