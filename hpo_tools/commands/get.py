"""``hpo-tools get``: print the values a path selects in a pipeline.config."""

from __future__ import annotations

import argparse
import logging
import sys

from hpo_tools.errors import ConfigPathError

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run"]

_logger = logging.getLogger(__name__)

NAME = "get"
HELP = "print the values a KEY selects in a pipeline.config, one per line"
DESCRIPTION = """\
Print every value KEY selects in CONFIG, one per line, in protobuf text format (strings quoted,
enums bare, messages as { ... }). KEY uses the same paths as `hpo-tools edit`, e.g.
feature_configs[:].embedding_dim or feature_configs[input_names[0]=user_id].hash_bucket_size.
A key that selects nothing is an error (exit code 2) naming the part of the path that failed.
CONFIG may be a local path, oss://bucket/key or hdfs://host:port/path (HPO_TOOLS_WEBHDFS).

Example:
  hpo-tools get samples/pipeline.config 'feature_configs[num_buckets<=8].input_names[0]'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hpo-tools get``."""
    parser.add_argument("config", metavar="CONFIG", help="the config to read (local, oss:// or hdfs://)")
    parser.add_argument("key", metavar="KEY", help="the path to read, e.g. model_dir")


def run(args: argparse.Namespace) -> int:
    """Print each selected value on its own line."""
    from hpo_tools import storage
    from hpo_tools.pbtxt import Document

    doc = Document.parse(storage.read_text(args.config), source=args.config)
    values = doc.get_text(args.key, strict=True)
    if not values:
        raise ConfigPathError(f"{args.config}: {args.key} selects nothing")
    for value in values:
        sys.stdout.write(value + "\n")
    return 0
