"""Text splicing: the structural edits of a document, keeping its layout.

:class:`Splicer` is a mixin of :class:`~hpo_tools.pbtxt.tree.Tree`. New, deleted and replaced
fields are parsed on their own (:meth:`Splicer._graft`), appended to the document's pieces and
spliced in through an *expansion* of the piece they replace; inserted fields take their siblings'
indentation (else the parent's plus the document's indentation unit), a deleted field takes its
line with it when it was alone on it, and a replaced field keeps the comments around it. Every
change of a body's field list is recorded for rollback (:meth:`Splicer._changing`).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from hpo_tools.pbtxt.syntax import MESSAGE, Body, Field, parse_pieces

__all__ = ["Splicer"]


class Splicer:
    """Mixin of Tree: insert, delete and replace fields in the text.

    Uses the tree's attributes and methods declared below. Its methods without a leading
    underscore (``indent_unit``, ``insert``, ``delete_field``, ``replace_field``,
    ``replace_contents``) are part of the tree's package-internal interface (see
    :mod:`hpo_tools.pbtxt.tree`); the others are used only here.
    """

    __slots__ = ()

    source: str
    pieces: list[str]
    root: Body
    expand: dict[int, list[Union[str, tuple[int, int]]]]
    nl: str
    unit: Optional[str]
    undo: Optional[list[Callable[[], None]]]
    line_start: dict[int, str]
    # methods of Tree and of PathResolver
    render: Callable[[int], str]
    render_range: Callable[[int, int], str]
    forget: Callable[[], None]

    def _changing(self, body: Body) -> None:
        """Record body's field list for rollback, and drop caches that depend on structure."""
        if self.undo is not None:
            old = list(body.fields)

            def undo(body: Body = body, old: list[Field] = old) -> None:
                body.fields[:] = old
                body.reset_index()

            self.undo.append(undo)
        self.forget()

    def indent_unit(self) -> str:
        """The indentation step of this document (from its first nested field; else 2 spaces)."""
        if self.unit is None:
            self.unit = "  "
            for field in self.root.fields:
                if field.kind != MESSAGE:
                    continue
                outer = self._line_indent(field.ni)
                for child in field.value.fields:
                    inner = self._line_indent(child.ni)
                    if outer is not None and inner is not None and len(inner) > len(outer) \
                            and inner.startswith(outer):
                        self.unit = inner[len(outer):]
                        return self.unit
                    break
        return self.unit

    def _line_indent(self, i: int) -> Optional[str]:
        """Indentation of the line that token i starts, or None when i does not start a line."""
        lead = self.render(i - 1)
        p = lead.rfind("\n")
        if p >= 0:
            return lead[p + 1:]
        if i == 1 and not lead.strip(" \t\f\v\ufeff"):
            return lead.replace("\ufeff", "")
        start = self.line_start.get(i - 1)
        return None if start is None else start + lead

    def _child_indent(self, body: Body) -> str:
        """Indentation for a new field of body: its fields', else the owner's plus a unit."""
        for field in body.fields:
            indent = self._line_indent(field.ni)
            if indent is not None:
                return indent
        outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
        return (outer or "") + self.indent_unit()

    def _graft(self, text: str, line_start: Optional[str] = None) -> tuple[tuple[int, int], Body]:
        """Parse text into new pieces appended to the document; return their range and root.

        `line_start` is the indentation of the line the text starts, when it starts one.
        """
        base = len(self.pieces)
        pieces, root = parse_pieces(text, f"{self.source} (edited)", base)
        self.pieces.extend(pieces)
        if line_start is not None:
            self.line_start[base] = line_start
        return (base, base + len(pieces)), root

    def _blank(self, lo: int, hi: int) -> None:
        """Empty pieces lo..hi (inclusive) and drop the expansions among them."""
        pieces = self.pieces
        for i in range(lo, hi + 1):
            pieces[i] = ""
        if self.expand:
            for k in [k for k in self.expand if lo <= k <= hi]:
                del self.expand[k]

    def insert(self, body: Body, after: Optional[Field],
                make: Callable[[Optional[str]], list[str]]) -> None:
        """Insert the fields `make(indent)` after `after` (default: body's last field)."""
        nl = self.nl
        starts: Optional[str] = None
        if after is None and body.fields:
            after = body.fields[-1]
        if after is not None:
            anchor = after.ei + 1
            indent = self._line_indent(after.ni)
            position = body.fields.index(after) + 1
            if indent is None:
                text = "".join(" " + t for t in make(None))
                split = 0
            else:
                text = "".join(nl + indent + t for t in make(indent))
                split = -1
        elif body.open_i < 0:
            anchor = body.close_i - 1
            position = 0
            texts = make("")
            lead = self.render(anchor)
            split = len(lead)
            if (not lead.strip() and anchor == 0) or lead.endswith("\n"):
                text = nl.join(texts) + nl
                starts = ""
            else:
                text = nl + nl.join(texts)
        else:
            # An empty message: rewrite everything between its braces (comments kept).
            inner = self.render_range(body.open_i + 1, body.close_i)
            p = inner.find("\n")
            if p >= 0:
                if p > 0 and inner[p - 1] == "\r":
                    p -= 1
                indent = self._child_indent(body)
                text = inner[:p] + "".join(nl + indent + t for t in make(indent)) + inner[p:]
            else:
                text = " " + " ".join(make(None)) + " "
            span, root = self._graft(text)
            self._changing(body)
            self._blank(body.open_i + 1, body.close_i - 1)
            self.expand[body.open_i + 1] = [span]
            body.fields[:] = root.fields
            body.reset_index()
            return
        span, root = self._graft(text, starts)
        self._changing(body)
        parts = self.expand.get(anchor)
        if parts is None:
            lead = self.pieces[anchor]
            if split == -1:
                split = _line_end(lead)
            self.expand[anchor] = [lead[:split], span, lead[split:]]
        elif isinstance(parts[0], str):
            parts.insert(1, span)  # right after `after`, before what was inserted there before
        else:
            parts.insert(0, span)
        body.fields[position:position] = root.fields
        body.reset_index()

    def delete_field(self, body: Body, field: Field) -> None:
        """Remove a field, with its line when it was alone on it."""
        self._changing(body)
        self._blank(field.ni, field.ei)
        lead = self._edge_text(field.ni - 1, last=True)
        if lead is not None:
            p = lead.rfind("\n")
            if p >= 0:
                if p > 0 and lead[p - 1] == "\r":
                    p -= 1
                self._set_edge_text(field.ni - 1, lead[:p], last=True)
                tail = self._edge_text(field.ei + 1, last=False)
                if tail is not None:
                    self._set_edge_text(field.ei + 1, tail[_line_end(tail):], last=False)
        body.fields.remove(field)
        body.reset_index()

    def _edge_text(self, i: int, last: bool) -> Optional[str]:
        """The plain text at the end (last) or start of trivia piece i, expansions included."""
        parts = self.expand.get(i)
        if parts is None:
            return self.pieces[i]
        part = parts[-1] if last else parts[0]
        return part if isinstance(part, str) else None

    def _set_edge_text(self, i: int, text: str, last: bool) -> None:
        """Set the plain text at the end (last) or start of trivia piece i."""
        parts = self.expand.get(i)
        if parts is None:
            self.pieces[i] = text
        else:
            parts[-1 if last else 0] = text

    def replace_field(self, body: Body, field: Field, text: str) -> None:
        """Replace a field by the field(s) parsed from text, keeping its lines and comments."""
        lead_i = field.ni - 1
        indent = self._line_indent(field.ni)
        lead = self._edge_text(lead_i, last=True)
        moved = ""
        if lead is not None:
            # The lines before the field (after the previous field's line) move with it.
            q = _line_end(lead)
            moved = lead[q:]
            self._set_edge_text(lead_i, lead[:q], last=True)
        starts = None
        if indent is not None and "\n" not in moved:
            starts = indent[: len(indent) - len(moved)]
        text = moved + text
        tail = self._edge_text(field.ei + 1, last=False)
        if tail is not None:
            # The rest of the field's line (a trailing comment) moves with the field.
            q = _line_end(tail)
            text += tail[:q]
            self._set_edge_text(field.ei + 1, tail[q:], last=False)
        span, root = self._graft(text, starts)
        self._changing(body)
        self._blank(field.ni, field.ei)
        self.expand[field.ni] = [span]
        position = body.fields.index(field)
        body.fields[position:position + 1] = root.fields
        body.reset_index()

    def replace_contents(self, body: Body, lines: list[str]) -> None:
        """Replace everything between a message's braces by the snippet lines."""
        nl = self.nl
        if body.close_i - 1 in self.expand:
            # Spliced text sits before the '}': only its line structure is known for sure.
            interior = self.render_range(body.open_i + 1, body.close_i)
            outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
            close_lead = nl + (outer or "") if "\n" in interior else " "
        else:
            close_lead = self.pieces[body.close_i - 1]
        if "\n" in close_lead or len(lines) > 1 or any("#" in line for line in lines):
            indent = self._child_indent(body)
            p = close_lead.rfind("\n")
            if p >= 0:
                if p > 0 and close_lead[p - 1] == "\r":
                    p -= 1
                tail = close_lead[p:]
            else:
                outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
                tail = nl + (outer or "")
            text = "".join(nl + (indent + line if line.strip() else "") for line in lines) + tail
        elif lines:
            text = " " + lines[0] + " "
        else:
            text = close_lead
        span, root = self._graft(text)
        self._changing(body)
        lo = body.open_i + 1
        self._blank(lo, body.close_i - 1)
        self.expand[lo] = [span]
        body.fields[:] = root.fields
        body.reset_index()


def _line_end(trivia: str) -> int:
    """Where the current line ends in trivia: before its first newline; at the end when there
    is no newline but a comment; else at the start."""
    p = trivia.find("\n")
    if p < 0:
        return len(trivia) if "#" in trivia else 0
    if p > 0 and trivia[p - 1] == "\r":
        p -= 1
    return p
