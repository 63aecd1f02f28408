"""``hpo-tools set-lr``: set the learning rate of every optimizer in a pipeline.config.

The options are those of the seed script ``finetune/modify_pipeline_config.py``, which runs this
command.
"""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run", "DEFAULT_LEARNING_RATE"]

_logger = logging.getLogger(__name__)

NAME = "set-lr"
HELP = "set the learning rate of every optimizer_config (finetune)"
DEFAULT_LEARNING_RATE = 1e-6
DESCRIPTION = """\
Set the learning rate of every train_config.optimizer_config, whatever its optimizer
(adam_optimizer, momentum_optimizer, ...) and schedule, and save the config:
  constant_learning_rate            learning_rate
  exponential_decay_learning_rate   initial_learning_rate (raised to min_learning_rate, with a
                                    warning, when below it)
  manual_step_learning_rate         initial_learning_rate
  cosine/poly/transformer schedules learning_rate_base (poly: raised to end_learning_rate,
                                    with a warning, when below it)
Everything else in the file (comments, layout) is kept. Prints each learning rate as read back
from the saved file, one `PATH: VALUE` per line. Both paths may be local, oss://bucket/key or
hdfs://host:port/path (through WebHDFS at HPO_TOOLS_WEBHDFS);
OSS credentials come from OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET / OSS_ENDPOINT when set,
else from --oss_config. On any error nothing is written and the exit code is 2.

Example:
  hpo-tools set-lr --pipeline_config_path pipeline.config --save_path finetune.config \\
      --learning_rate 1e-6
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hpo-tools set-lr`` (the seed script's names; dashed spellings also work)."""
    parser.add_argument(
        "--pipeline_config_path",
        "--pipeline-config-path",
        dest="pipeline_config_path",
        required=True,
        metavar="PATH",
        help="the config to read (local, oss:// or hdfs://)",
    )
    parser.add_argument(
        "--save_path",
        "--save-path",
        dest="save_path",
        required=True,
        metavar="PATH",
        help="where to write the edited config (local, oss:// or hdfs://); may equal the input",
    )
    parser.add_argument(
        "--learning_rate",
        "--learning-rate",
        dest="learning_rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        metavar="LR",
        help=f"the new learning rate (default {DEFAULT_LEARNING_RATE:g})",
    )
    parser.add_argument(
        "--oss_config",
        "--oss-config",
        dest="oss_config",
        default=None,
        metavar="FILE",
        help="ossutil config with [Credentials] accessKeyID, accessKeySecret, endpoint "
        "(default ~/.ossutilconfig; the OSS_* environment variables win when set)",
    )


def run(args: argparse.Namespace) -> int:
    """Read, set every learning rate, save atomically, read back and print."""
    from hpo_tools.lr import find_learning_rates, set_learning_rate
    from hpo_tools.pbtxt import Document
    from hpo_tools.storage import Storage

    store = Storage(oss_config=args.oss_config)
    source = args.pipeline_config_path
    doc = Document.parse(store.read_text(source), source=source)
    set_learning_rate(doc, args.learning_rate, source=source)
    store.write_text(args.save_path, doc.to_text())
    saved = Document.parse(store.read_text(args.save_path), source=args.save_path)
    for rate in find_learning_rates(saved, source=args.save_path):
        sys.stdout.write(f"{rate.path}: {saved.get_text(rate.path)[-1]}\n")
    _logger.info("saved %s", args.save_path)
    return 0
