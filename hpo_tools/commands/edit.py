"""``hpo-tools edit``: apply path edits to a pipeline.config and write the result."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from hpo_tools.errors import ConfigError
from hpo_tools.pbtxt.schema import add_schema_arguments, load_schema_from_args

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run", "parse_assignment"]

_logger = logging.getLogger(__name__)

NAME = "edit"
HELP = "apply edits (--set KEY=VALUE, --params FILE.json) to a pipeline.config"
DESCRIPTION = """\
Apply edits to a protobuf text-format config (an EasyRec pipeline.config) and write the result
to OUT, or to stdout. Only the edited values change: comments, blank lines, order and layout are
kept, and with no edits the output is byte-identical to CONFIG. Edits are all or nothing: on any
error nothing is written, the message is printed as `error: ...` and the exit code is 2.

Keys are EasyRec edit_config paths:
  model_config.dbmtl.bottom_dnn.hidden_units[1]          index (negative counts from the end)
  feature_configs[:].embedding_dim                       every element; [1:3] a slice
  feature_configs[input_names[0]=user_id].hash_bucket_size   elements where a condition holds
      (= != > < >= <=; numeric when both sides are numbers; [tower_name="cvr"] is a string)
  "a.b;c.d" with value "1;2"                             several keys at once (counts must match)
  ${name}                                                replaces every ${name} in the file text

Values:
  --set values are JSON when they parse as JSON (32, 1e-4, true, [64, 32], "quoted"), otherwise
  plain strings (--set model_dir=oss://b/m keeps the text as is). --params FILE.json holds an
  object {KEY: VALUE, ...}: an NNI parameter dict (NNI's parameter.cfg record, with
  "parameter_id" and "parameters", works too) or an EasyRec edit_config_json dict. --set is
  applied after --params and wins on the same key.
  The type comes from the schema when one is given, else from the literal already in the file:
  a quoted field stays quoted, a float field prints as a float, an enum stays a bare name. A list
  replaces all elements of a repeated scalar field; a "{ ... }" text-format snippet replaces the
  contents of a message field.

New fields:
  A path naming a field that is absent from the file is an error with a "did you mean" (the
  usual cause is a typo), unless a schema says the field exists (it is then created under its
  parent, after the parent's last field) or --allow-new-fields is given. With
  --allow-new-fields, numbers and booleans are written bare and anything else quoted; write
  enum:NAME to add a bare enum name (--set 'model_config.loss_type=enum:L2_LOSS').

Schema (optional): --proto-path DIR --message PKG.MSG compiles the .proto files under DIR at run
time (needs grpcio-tools); --proto-module MODULE:MSG imports an installed _pb2 module. Paths and
values are then checked against field names, types, enums and oneofs.

CONFIG, OUT and FILE.json may be local paths, oss://bucket/key (credentials: OSS_ACCESS_KEY_ID,
OSS_ACCESS_KEY_SECRET, OSS_ENDPOINT, or ~/.ossutilconfig) or hdfs://host:port/path (through
WebHDFS at HPO_TOOLS_WEBHDFS=http://namenode:9870, as HADOOP_USER_NAME).

Examples:
  hpo-tools edit pipeline.config --set 'feature_configs[:].embedding_dim=32' -o out.config
  hpo-tools edit pipeline.config --params params.json -o oss://bucket/trial/pipeline.config
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hpo-tools edit``."""
    parser.add_argument("config", metavar="CONFIG", help="the config to edit (local, oss:// or hdfs://)")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one edit; repeatable. VALUE is JSON when it parses as JSON, else a string",
    )
    parser.add_argument(
        "--params",
        metavar="FILE.json",
        help="a JSON object of edits: NNI parameters or an EasyRec edit_config_json dict",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="where to write the result (default: stdout)"
    )
    add_schema_arguments(parser)
    parser.add_argument(
        "--allow-new-fields",
        action="store_true",
        help="create fields absent from CONFIG instead of failing (see 'New fields' above)",
    )


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` at the first ``=`` outside brackets; VALUE is JSON when it parses.

    ``feature_configs[input_names[0]=user_id].embedding_dim=32`` gives the key
    ``feature_configs[input_names[0]=user_id].embedding_dim`` and the value ``32``.

    Raises:
        ConfigError: No ``=`` outside brackets, or an empty key.
    """
    depth = 0
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'" and depth > 0:
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif char == "=" and depth == 0:
            key, raw = text[:i].strip(), text[i + 1 :]
            if not key:
                break
            return key, _json_or_string(raw)
    raise ConfigError(f"--set {text!r}: expected KEY=VALUE")


def _json_or_string(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_params(path: str) -> dict[str, Any]:
    """Edits from a JSON file: ``{KEY: VALUE}``, or NNI's ``{"parameters": {...}, ...}``."""
    from hpo_tools import storage

    text = storage.read_text(path)
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"--params {path}: not valid JSON ({err})") from err
    if (
        isinstance(data, dict)
        and isinstance(data.get("parameters"), dict)
        and "parameter_id" in data
    ):
        data = data["parameters"]  # NNI's parameter.cfg / get_next_parameter() record
    if not isinstance(data, dict):
        raise ConfigError(
            f"--params {path}: expected a JSON object of KEY: VALUE, got {type(data).__name__}"
        )
    return data


def collect_edits(params_path: str | None, assignments: Iterable[str]) -> dict[str, Any]:
    """``--params`` then ``--set`` edits, merged in that order (a later key wins)."""
    edits: dict[str, Any] = {}
    if params_path:
        edits.update(load_params(params_path))
    for text in assignments:
        key, value = parse_assignment(text)
        edits.pop(key, None)  # keep "applied last" order for a key given twice
        edits[key] = value
    return edits


def write_output(text: str, output: str | None) -> None:
    """Write ``text`` to ``output`` (atomically, local or oss://) or to stdout, unchanged."""
    if output:
        from hpo_tools import storage

        storage.write_text(output, text)
        return
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
    else:  # bytes, so no newline translation or locale encoding can alter the config
        sys.stdout.flush()
        buffer.write(text.encode("utf-8"))
        buffer.flush()


def apply_to_text(
    text: str,
    edits: Mapping[str, Any],
    *,
    source: str,
    schema: Any = None,
    allow_new_fields: bool = False,
) -> str:
    """``text`` with ``edits`` applied; ``text`` itself (checked for syntax) when there are none."""
    from hpo_tools.pbtxt import Document, apply_edits

    if not edits:
        Document.parse(text, source=source)  # a syntax error is reported, never passed on
        return text

    return apply_edits(
        text, dict(edits), source=source, schema=schema, allow_new_fields=allow_new_fields
    )


def run(args: argparse.Namespace) -> int:
    """Read CONFIG, apply the edits, write OUT or stdout."""
    from hpo_tools import storage

    edits = collect_edits(args.params, args.assignments)
    schema = load_schema_from_args(args)
    text = storage.read_text(args.config)
    result = apply_to_text(
        text, edits, source=args.config, schema=schema, allow_new_fields=args.allow_new_fields
    )
    write_output(result, args.output)
    _logger.info("applied %d edit(s) to %s", len(edits), args.config)
    return 0
