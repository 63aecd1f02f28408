"""Tree: a parsed document as the modules of :mod:`hpo_tools.pbtxt` share it.

:class:`~hpo_tools.pbtxt.edit.Document` is the public face of a document; behind it is one
:class:`Tree`, which holds the text as pieces (see :mod:`hpo_tools.pbtxt.syntax`), the syntax tree
over them, the *expansions* that splice edited text in, and the selection caches. The tree is the
package's internal interface: its attributes and its methods without a leading underscore
(including those of its mixins :class:`~hpo_tools.pbtxt.resolve.PathResolver` and
:class:`~hpo_tools.pbtxt.splice.Splicer`) are what ``edit.py`` (the views and the editor's
orchestration), ``targets.py`` and ``plan.py`` (the editor's parts) use, and nothing else. They
are public names so that no module reaches into another's private ones, but they are not part of
the package's API: the tree is not exported, and a Document never hands it out.

Dependencies point one way: ``syntax``/``paths``/``values`` <- ``resolve``, ``splice`` <- ``tree``
<- ``targets`` <- ``plan`` <- ``edit``.

Attributes:
    source: names the text in error messages.
    pieces: the text as pieces (trivia and tokens alternating); spliced-in text is appended past
        ``n0``, the number of pieces of the parsed text.
    root: the top-level message body.
    expand: piece index -> the parts (str, or ``(lo, hi)`` ranges of appended pieces) printed
        instead of that piece.
    items_cache, cond_cache: selections read so far (see ``PathResolver``).
    nl: the newline of the parsed text (``"\\r\\n"`` when it has one, else ``"\\n"``).
    unit: the indentation step, once ``indent_unit()`` has worked it out.
    undo: during an ``apply``, the rollback log of field-list changes; None otherwise.
    line_start: first trivia piece of a spliced-in text -> indentation, when that text starts a
        line although its own first trivia holds no newline (e.g. at the very start of the file).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Union

from hpo_tools.pbtxt.resolve import Item, PathResolver
from hpo_tools.pbtxt.splice import Splicer
from hpo_tools.pbtxt.syntax import Body, parse_pieces, scalar_end

__all__ = ["Tree"]

_logger = logging.getLogger(__name__)


class Tree(PathResolver, Splicer):
    """A parsed document's pieces, syntax tree, expansions and caches (package-internal)."""

    __slots__ = (
        "source",
        "pieces",
        "root",
        "n0",
        "expand",
        "items_cache",
        "cond_cache",
        "nl",
        "unit",
        "undo",
        "line_start",
    )

    def __init__(self, text: str, source: str) -> None:
        """Parse text.

        Raises:
            ConfigError: ``"source:line:col: expected ..., got ..."`` on a syntax error.
        """
        self.source = source
        pieces, root = parse_pieces(text, source)
        self.pieces = pieces
        self.root = root
        self.n0 = len(pieces)
        self.expand: dict[int, list[Union[str, tuple[int, int]]]] = {}
        self.items_cache: dict[tuple[int, str], list[Item]] = {}
        self.cond_cache: dict[tuple[int, str, str], Any] = {}
        self.nl = "\r\n" if "\r\n" in text else "\n"
        self.unit: Optional[str] = None
        self.undo: Optional[list[Callable[[], None]]] = None
        self.line_start: dict[int, str] = {}

    # -- rendering ------------------------------------------------------------------------------
    def to_text(self) -> str:
        """The whole text: byte-identical to the parsed text when nothing was edited."""
        if not self.expand:
            return "".join(self.pieces[: self.n0])
        out = self.pieces[: self.n0]
        for k in self.expand:
            if k < self.n0:
                out[k] = self.render(k)
        return "".join(out)

    def render(self, k: int) -> str:
        """Text of piece k with its expansion, if any."""
        parts = self.expand.get(k)
        if parts is None:
            return self.pieces[k]
        return "".join(p if isinstance(p, str) else self.render_range(p[0], p[1]) for p in parts)

    def render_range(self, lo: int, hi: int) -> str:
        """Text of pieces lo..hi-1 with their expansions."""
        expand = self.expand
        pieces = self.pieces
        if not expand:
            return "".join(pieces[lo:hi])
        return "".join(self.render(i) if i in expand else pieces[i] for i in range(lo, hi))

    def node_text(self, node: Union[int, Body]) -> str:
        """A node (a scalar's piece index or a message body) printed as the file writes it."""
        if isinstance(node, int):
            return self.render_range(node, scalar_end(self.pieces, node) + 1)
        if node.open_i < 0:
            return self.to_text()
        return self.render_range(node.open_i, node.close_i + 1)

    # -- reload and rollback (used by the editor) -----------------------------------------------
    def reload(self, text: str) -> None:
        """Replace the whole text (after a ${placeholder} edit); nodes taken before are stale."""
        pieces, root = parse_pieces(text, self.source)
        self.pieces = pieces
        self.root = root
        self.n0 = len(pieces)
        self.expand = {}
        self.line_start = {}
        self.forget()

    def snapshot(self) -> tuple[Any, ...]:
        """The state that :meth:`restore` brings back when an ``apply`` fails."""
        return (list(self.pieces), {k: list(v) for k, v in self.expand.items()}, self.root,
                self.n0, dict(self.line_start))

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        """Undo the field-list changes recorded since the snapshot and bring it back."""
        for undo in reversed(self.undo or []):
            undo()
        self.pieces, self.expand, self.root, self.n0, self.line_start = snapshot
        self.forget()
