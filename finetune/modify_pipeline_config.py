#!/usr/bin/env python
"""Set the learning rate of every optimizer in an EasyRec pipeline.config (seed-compatible CLI).

    python finetune/modify_pipeline_config.py --pipeline_config_path pipeline.config \\
        --save_path finetune.config --learning_rate 1e-6 [--oss_config ~/.ossutilconfig]

The same command as ``hpo-tools set-lr``; runs from a checkout without installing hpo-tools and
without EasyRec. Exit code 0 on success, 2 on a user error (message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run from a checkout: make the repository's hpo_tools importable.
_REPO = Path(__file__).resolve().parent.parent
if (_REPO / "hpo_tools" / "__init__.py").is_file() and str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from hpo_tools.cli import EXIT_USER_ERROR, configure_logging  # noqa: E402
from hpo_tools.commands import set_lr  # noqa: E402
from hpo_tools.errors import HpoError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Parse the seed options, run ``set-lr``, map user errors to exit code 2."""
    parser = argparse.ArgumentParser(
        prog="modify_pipeline_config.py",
        description=set_lr.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_lr.add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(0)
    try:
        return set_lr.run(args)
    except HpoError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
