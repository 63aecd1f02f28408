"""Document: read and edit a protobuf text-format config without losing a byte of its layout.

``Document.parse(text)`` keeps the text as pieces (see :mod:`hpo_tools.pbtxt.syntax`);
``get``/``get_one``/``get_text``/``has`` read values through config paths
(:mod:`hpo_tools.pbtxt.paths`), and ``apply`` edits them: a changed value rewrites only its token,
and a new, deleted or replaced field is parsed on its own and spliced in. See docs/config-editor.md.

This module holds the public API and the orchestration of ``apply`` (multi-key and ``${name}``
edits, all or nothing); the parts live beside it, one job each, and talk to each other only
through the package-internal :class:`~hpo_tools.pbtxt.tree.Tree` behind every Document:

- :mod:`hpo_tools.pbtxt.tree`: the parsed text, its rendering, reload and rollback;
- :mod:`hpo_tools.pbtxt.resolve`: selecting nodes by path (``Tree`` mixin ``PathResolver``);
- :mod:`hpo_tools.pbtxt.splice`: inserting, deleting and replacing fields in the text
  (``Tree`` mixin ``Splicer``);
- :mod:`hpo_tools.pbtxt.targets`: what an edit writes to, checked against the schema;
- :mod:`hpo_tools.pbtxt.plan`: checking values and queueing writes and splices;
- :mod:`hpo_tools.pbtxt.values`: value conversion and typing (``RawText``, enums, lists, snippets).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Union

from hpo_tools.errors import ConfigError, ConfigPathError
from hpo_tools.pbtxt.paths import parse_path
from hpo_tools.pbtxt.plan import EditPlanner
from hpo_tools.pbtxt.syntax import QUOTES, TOKEN_RE, Body, decode_scalar, escape_string
from hpo_tools.pbtxt.targets import TargetResolver
from hpo_tools.pbtxt.tree import Tree
from hpo_tools.pbtxt.values import RawText, plain_text

__all__ = ["Document", "Message", "apply_edits", "RawText", "MISSING"]

_logger = logging.getLogger(__name__)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Default of ``get_one``: raise when nothing is selected."""


class Message:
    """A view of one message of a :class:`Document` (the top level or a sub-message).

    Paths given to its methods are relative to this message. A view follows edits to values made
    later; a view of a message that an edit replaced as a whole no longer follows the document.
    """

    __slots__ = ("_tree", "_body")

    def __init__(self, tree: Tree, body: Body) -> None:
        self._tree = tree
        self._body = body

    def get(self, path: str, *, strict: bool = False) -> list[object]:
        """Return every value the path selects, in text order.

        Args:
            path: a config path, e.g. ``feature_configs[:].embedding_dim``.
            strict: raise ConfigPathError (naming the path and the failing part) when a field is
                absent, an index is out of range or a condition matches nothing, instead of
                returning fewer (or no) values.

        Returns:
            int, float, bool or str (enum names are str) for scalar values, :class:`Message` for
            messages.
        """
        tree = self._tree
        return [_value(tree, node) for node in tree.select(self._body, path, strict)]

    def get_one(self, path: str, default: object = MISSING) -> object:
        """Return the last selected value (EasyRec reads the last of a repeated singular field).

        Raises:
            ConfigPathError: nothing is selected and no default was given.
        """
        if default is MISSING:
            nodes = self._tree.select(self._body, path, True)
            if not nodes:
                raise ConfigPathError(f"{path}: selects nothing (an empty list)")
            return _value(self._tree, nodes[-1])
        nodes = self._tree.select(self._body, path, False)
        return _value(self._tree, nodes[-1]) if nodes else default

    def get_text(self, path: str, *, strict: bool = False) -> list[str]:
        """Return each selected value printed in text format, exactly as the file writes it."""
        tree = self._tree
        return [tree.node_text(node) for node in tree.select(self._body, path, strict)]

    def has(self, path: str) -> bool:
        """True when the path selects at least one value."""
        return bool(self._tree.select(self._body, path, False))

    def field_names(self) -> list[str]:
        """Names of the fields of this message, in order of first appearance."""
        return list(self._body.by_name())

    def to_text(self) -> str:
        """This message printed as the file writes it (``{ ... }``; the whole text for the root)."""
        return self._tree.node_text(self._body)

    def __repr__(self) -> str:
        return f"Message({self.field_names()!r})"


def _value(tree: Tree, node: Union[int, Body]) -> object:
    """A node as a Python value: a decoded scalar or a Message view."""
    if isinstance(node, int):
        return decode_scalar(tree.pieces, node)
    return Message(tree, node)


class Document(Message):
    """A whole protobuf text-format document.

    The text, its syntax tree and the edits spliced in live in a package-internal
    :class:`~hpo_tools.pbtxt.tree.Tree`; a Document is the top-level view of it plus ``apply``.

    Example:
        >>> doc = Document.parse('train_config { num_steps: 100 }  # steps\\n')
        >>> doc.get_one("train_config.num_steps")
        100
        >>> doc.apply({"train_config.num_steps": 200})
        >>> doc.to_text()
        'train_config { num_steps: 200 }  # steps\\n'
    """

    __slots__ = ()

    def __init__(self, text: str, source: str = "<string>") -> None:
        if not isinstance(text, str):
            raise ConfigError(f"{source}: expected text, got {type(text).__name__}")
        tree = Tree(text, source)
        super().__init__(tree, tree.root)

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> Document:
        """Parse text; ``source`` names it in error messages.

        Raises:
            ConfigError: ``"source:line:col: expected ..., got ..."`` on a syntax error.
        """
        return cls(text, source)

    @property
    def source(self) -> str:
        """What names the text in error messages (a file path, or ``"<string>"``)."""
        return self._tree.source

    @source.setter
    def source(self, source: str) -> None:
        self._tree.source = source

    def to_text(self) -> str:
        """The document as text: byte-identical to the parsed text when nothing was edited."""
        return self._tree.to_text()

    def apply(
        self,
        edits: Mapping[str, object],
        *,
        schema: Any = None,
        allow_new_fields: bool = False,
    ) -> None:
        """Apply edits in order, all or nothing.

        Args:
            edits: path -> value. Keys may be ``"a;b"`` (with values ``"1;2"`` or a list) or
                ``${name}`` (replaces every ``${name}`` in the text).
            schema: a ``google.protobuf.descriptor.Descriptor`` of the root message: paths and
                values are checked against it, and fields it knows may be created.
            allow_new_fields: create absent fields without a schema.

        Raises:
            ConfigPathError: naming the path and the failing part; the document is unchanged.
        """
        tree = self._tree
        try:
            _apply(tree, edits, schema, allow_new_fields)
        finally:
            # A ${placeholder} edit reparses the text (a new root); a rollback brings one back.
            self._body = tree.root


def apply_edits(
    text: str,
    edits: Mapping[str, object],
    *,
    source: str = "<string>",
    schema: Any = None,
    allow_new_fields: bool = False,
) -> str:
    """Parse text, apply edits (all or nothing) and return the edited text.

    Raises:
        ConfigError: the text does not parse.
        ConfigPathError: an edit does not apply (the message names the path and the failing part).
    """
    doc = Document.parse(text, source)
    doc.apply(edits, schema=schema, allow_new_fields=allow_new_fields)
    return doc.to_text()


# -- applying edits -----------------------------------------------------------------------------


class _Editor(TargetResolver, EditPlanner):
    """Applies one `apply()` call's edits to a document's tree (which rolls back on failure)."""

    def __init__(self, tree: Tree, schema: Any, allow_new: bool) -> None:
        self.tree = tree
        self.schema = getattr(schema, "DESCRIPTOR", schema)
        if self.schema is not None and not hasattr(self.schema, "fields_by_name"):
            raise ConfigPathError(
                f"schema: expected a protobuf message Descriptor, got {type(schema).__name__}"
            )
        self.allow_new = allow_new
        self.kinds: dict[Any, str] = {}
        self.literals: dict[tuple[str, object], str] = {}

    # -- entry points ---------------------------------------------------------------------------
    def run(self, edits: Mapping[str, object]) -> None:
        """Apply every edit in order: ``${name}`` keys, ``"a;b"`` multi-keys, or one path."""
        for key, value in edits.items():
            if not isinstance(key, str):
                raise ConfigPathError(f"edit key {key!r}: expected a path string")
            text = key.strip()
            if ";" in text:
                keys = [k.strip() for k in text.split(";")]
                if isinstance(value, str):
                    values: list[object] = [RawText(v.strip()) for v in value.split(";")]
                elif isinstance(value, (list, tuple)):
                    values = list(value)
                else:
                    raise ConfigPathError(
                        f"{text}: a multi-key entry needs values 'v1;v2;...' or a list, "
                        f"got {value!r}"
                    )
                if len(keys) != len(values):
                    raise ConfigPathError(
                        f"{text}: {len(keys)} keys but {len(values)} values in {value!r}"
                    )
                for k, v in zip(keys, values):
                    self.edit_key(k, v)
            else:
                self.edit_key(text, value)

    def edit_key(self, key: str, value: object) -> None:
        """One key: a ``${name}`` placeholder or a path."""
        if key.startswith("${") and key.endswith("}"):
            self.replace_placeholder(key, value)
        else:
            self.edit(key, value)

    def replace_placeholder(self, key: str, value: object) -> None:
        """Replace every ``${name}`` in the text (trivia and tokens) and parse the result."""
        if value is None or isinstance(value, (list, tuple, dict)):
            raise ConfigPathError(f"{key}: expected a number, string or bool, got {value!r}")
        tree = self.tree
        text = tree.to_text()
        if key not in text:
            raise ConfigPathError(f"{key}: the placeholder does not occur in {tree.source}")
        raw = plain_text(value)
        out = []
        for trivia, token in TOKEN_RE.findall(text):
            out.append(trivia.replace(key, raw))
            if key in token:
                if token[:1] in QUOTES and len(token) > 1:
                    token = token.replace(key, escape_string(raw, token[0]))
                else:
                    token = token.replace(key, raw)
            out.append(token)
        try:
            tree.reload("".join(out))
        except ConfigError as exc:
            raise ConfigPathError(f"{key}: {raw!r} in its place does not parse: {exc}") from None

    def edit(self, path_text: str, value: object) -> None:
        """Set every value one path selects (creating absent fields where allowed)."""
        if value is None or isinstance(value, Mapping):
            raise ConfigPathError(
                f"{path_text}: expected a number, string, bool, list or '{{ ... }}' message, "
                f"got {value!r}"
            )
        tree = self.tree
        path = tree.alias(tree.root, parse_path(path_text))
        targets, creations = self.resolve(path)
        # Check every value before the first write, so that one path fails or applies whole.
        self.literals: dict[tuple[str, object], str] = {}
        writes: list[tuple[int, str]] = []
        plans: list[Callable[[], None]] = []
        for target in targets:
            self.plan_target(path, target, value, writes, plans)
        plans += [self.plan_creation(path, c, value) for c in creations]
        for t, literal in writes:
            self.write_scalar(t, literal)
        if writes:
            tree.invalidate({t for t, _ in writes})
        for plan in plans:
            plan()


def _apply(tree: Tree, edits: Mapping[str, object], schema: Any, allow_new: bool) -> None:
    """Run one ``apply`` call's edits; restore the tree's snapshot when any of them fails."""
    if not isinstance(edits, Mapping):
        raise ConfigPathError(f"edits: expected a mapping of path -> value, got {edits!r}")
    editor = _Editor(tree, schema, allow_new)
    snapshot = tree.snapshot()
    tree.undo = []
    try:
        editor.run(edits)
    except BaseException:
        tree.restore(snapshot)
        raise
    finally:
        tree.undo = None
