"""Lossless protobuf text-format editing with EasyRec ``edit_config`` paths.

``Document.parse(text)`` reads a config, ``get``/``get_one``/``get_text``/``has`` read values by
path, ``apply(edits)`` edits them touching only the edited tokens, and ``to_text()`` prints the
document back (byte-identical when nothing was edited). See docs/config-editor.md.
"""

from __future__ import annotations

from hpo_tools.pbtxt.edit import MISSING, Document, Message, RawText, apply_edits
from hpo_tools.pbtxt.paths import Condition, Index, Path, Slice, Step, parse_path
from hpo_tools.pbtxt.values import FloatValue

__all__ = [
    "Document",
    "Message",
    "apply_edits",
    "RawText",
    "FloatValue",
    "MISSING",
    "parse_path",
    "Path",
    "Step",
    "Index",
    "Slice",
    "Condition",
]
