"""``python -m hpo_tools.trainer``: train and evaluate one EasyRec-style ``pipeline.config``.

Exit codes: 0 done, 2 bad config/input (one ``error: ...`` line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Optional

from hpo_tools.errors import HpoError

__all__ = ["main", "build_parser"]

_logger = logging.getLogger("hpo_tools.trainer")


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line (EasyRec's flag names)."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo_tools.trainer",
        description="Train and evaluate a DBMTL/DeepFM pipeline.config locally with TensorFlow, "
        "writing EasyRec's model_dir layout (checkpoints, eval_val/ events). See docs/trainer.md.",
        epilog="exit codes: 0 done; 2 bad config or input (one 'error: ...' line on stderr); "
        "130 interrupted (SIGINT).",
    )
    parser.add_argument("--pipeline_config_path", required=True, help="the pipeline.config")
    parser.add_argument("--model_dir", help="overrides model_dir of the config")
    parser.add_argument("--train_input_path",
                        help="overrides train_input_path (CSV files; globs, comma lists)")
    parser.add_argument("--eval_input_path",
                        help="overrides eval_input_path (CSV files; globs, comma lists)")
    parser.add_argument(
        "--fine_tune_checkpoint",
        help="checkpoint prefix or model dir (its latest checkpoint) to start from; "
        "overrides train_config.fine_tune_checkpoint",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the trainer; returns the exit code."""
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ INFO/WARNING banners (oneDNN, CPU features) would bury our log lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False
    try:
        from hpo_tools.trainer.config import load_settings
        from hpo_tools.trainer.train import train_and_evaluate

        settings = load_settings(args.pipeline_config_path)
        train_and_evaluate(
            settings,
            model_dir=args.model_dir,
            train_input_path=args.train_input_path,
            eval_input_path=args.eval_input_path,
            fine_tune_checkpoint=args.fine_tune_checkpoint,
            seed=args.seed,
        )
    except HpoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
