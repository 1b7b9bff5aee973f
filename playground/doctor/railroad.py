"""Railroad diagrams of a regex or a Lark grammar, as SVG: the constraint drawn as written,
so a user sees the alternatives, repetitions and literals the engine will enforce.

Pure and bounded in size: every box and branch drawn counts against --max-diagram-nodes,
nesting against --max-diagram-depth and the SVG against --max-diagram-bytes; past one the
caller gets a LimitError naming it (never a half-drawn diagram). Time is the caller's to
bound: the page draws in a killable worker (playground/web/railroad_view.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

# Python's own regex parser (`sre_parse` before 3.11, where that name warns): the regex as
# `re` reads it, which is how the validator reads what RE2 refuses.
from re import _constants as sre_constants
from re import _parser as sre_parse
from typing import Any

import railroad as rr
from lark import Tree
from lark import grammar as lark_grammar
from lark.exceptions import LarkError
from lark.load_grammar import GrammarBuilder, _parse_grammar

from playground.core.constraints import LarkGrammar, Regex
from playground.core.constraints import _check_imports as check_imports
from playground.core.limits import Limits
from playground.errors import ConstraintError, LimitError

# A literal wider than this is cut ("…"): one 10,000-character string is one box, but a
# box that wide would push the rest of the diagram out of sight.
MAX_LABEL_CHARS = 60


class _Budget:
    """Counts the boxes and branches drawn and the nesting, raising past the limits: the
    count stops a hostile constraint at the first box too many, not after drawing it all."""

    def __init__(self, limit: Limits) -> None:
        self.limit = limit
        self.nodes = 0
        self.svg_bytes = 0

    def node(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.limit.max_diagram_nodes:
            raise LimitError(self.limit.message("max_diagram_nodes") + "; draw a smaller "
                             "constraint")
        if depth > self.limit.max_diagram_depth:
            raise LimitError(self.limit.message("max_diagram_depth", depth) + "; nest less")


def diagram(mode: str, text: str, limit: Limits) -> str:
    """The diagram of a regex or a grammar as SVG elements (one per rule, start first).
    Raises ConstraintError (the constraint's check message) or LimitError, one line each."""
    try:
        if mode == "regex":
            return regex_svg(text, limit)
        if mode == "grammar":
            return grammar_svg(text, limit)
    except RecursionError:
        raise LimitError(f"{mode}: nested too deeply to draw") from None
    raise ConstraintError(f"no diagram for mode {mode!r}: only regex and grammar")


def _svg(items: list[Any], label: str, budget: _Budget) -> str:
    """One diagram, its `label` at the start; its SVG counts against the size limit."""
    chunks: list[str] = []
    rr.Diagram(rr.Start(label=label), *items).writeSvg(chunks.append)
    svg = "".join(chunks)
    budget.svg_bytes += len(svg.encode())
    budget.limit.require("max_diagram_bytes", budget.svg_bytes)
    return svg


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 1] + "…"


# ---- regex ------------------------------------------------------------------------------

_CATEGORIES = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D",
               "CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S",
               "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}
_ANCHORS = {"AT_BEGINNING": "^ start", "AT_BEGINNING_STRING": r"\A start",
            "AT_END": "$ end", "AT_END_STRING": r"\Z end",
            "AT_BOUNDARY": r"\b word boundary", "AT_NON_BOUNDARY": r"\B not a boundary"}


def regex_svg(pattern: str, limit: Limits) -> str:
    """The regex's diagram: literal runs as quoted boxes, a character class as one box."""
    Regex.from_text(pattern)  # its check message first, as the editor's check line says
    parsed = sre_parse.parse(pattern)
    budget = _Budget(limit)
    names = {number: name for name, number in parsed.state.groupdict.items()}
    body = _regex_sequence(list(parsed), budget, 1, names)
    return _svg([body], "regex", budget)


def _regex_sequence(items: list[tuple[Any, Any]], budget: _Budget, depth: int,
                    names: dict[int, str]) -> Any:
    nodes: list[Any] = []
    run: list[str] = []
    for op, value in items:
        if str(op) == "LITERAL":  # consecutive characters read as one word
            run.append(chr(value))
            continue
        if run:
            nodes.append(_literal("".join(run), budget, depth))
            run = []
        nodes.append(_regex_item(str(op), value, budget, depth, names))
    if run:
        nodes.append(_literal("".join(run), budget, depth))
    if not nodes:
        budget.node(depth)
        return rr.Skip()
    return nodes[0] if len(nodes) == 1 else rr.Sequence(*nodes)


def _literal(text: str, budget: _Budget, depth: int) -> Any:
    budget.node(depth)
    return rr.Terminal(_label(json.dumps(text, ensure_ascii=False)))


def _regex_item(op: str, value: Any, budget: _Budget, depth: int,
                names: dict[int, str]) -> Any:
    inner = depth + 1
    budget.node(depth)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, sub = value
        return _repeat(_regex_sequence(list(sub), budget, inner, names), low,
                       None if high == sre_constants.MAXREPEAT else high)
    if op == "BRANCH":
        return rr.Choice(0, *[_regex_sequence(list(sub), budget, inner, names)
                              for sub in value[1]])
    if op == "SUBPATTERN":
        group, _, _, sub = value
        body = _regex_sequence(list(sub), budget, inner if group in names else depth, names)
        return rr.Group(body, rr.Comment(names[group])) if group in names else body
    if op == "IN":
        return rr.Terminal(_label(_char_class(value)), cls="char-class")
    if op == "NOT_LITERAL":
        return rr.Terminal(_label(f"[^{_class_char(value)}]"), cls="char-class")
    if op == "ANY":
        return rr.NonTerminal("any character")
    if op == "AT":
        return rr.Comment(_ANCHORS.get(str(value), str(value)))
    if op == "GROUPREF":
        return rr.NonTerminal(f"same as group {names.get(value, value)}")
    if op in ("ASSERT", "ASSERT_NOT"):
        direction, sub = value
        word = ("followed by" if direction == 1 else "preceded by")
        word = word if op == "ASSERT" else "not " + word
        return rr.Group(_regex_sequence(list(sub), budget, inner, names), rr.Comment(word))
    if op == "GROUPREF_EXISTS":
        group, yes, no = value
        return rr.Group(rr.Choice(0, _regex_sequence(list(yes), budget, inner, names),
                                  _regex_sequence(list(no or []), budget, inner, names)),
                        rr.Comment(f"if group {names.get(group, group)} matched"))
    if op == "ATOMIC_GROUP":
        return rr.Group(_regex_sequence(list(value), budget, inner, names),
                        rr.Comment("atomic"))
    return rr.Comment(op.lower())  # a construct new to `re`: named, not drawn


def _char_class(items: list[tuple[Any, Any]]) -> str:
    """`[^a-z\\d-]` back from sre's items; a lone `\\d` stays `\\d`."""
    if len(items) == 1 and str(items[0][0]) == "CATEGORY":
        return _CATEGORIES.get(str(items[0][1]), "[?]")
    parts = []
    for op, value in items:
        name = str(op)
        if name == "NEGATE":
            parts.append("^")
        elif name == "LITERAL":
            parts.append(_class_char(value))
        elif name == "RANGE":
            parts.append(f"{_class_char(value[0])}-{_class_char(value[1])}")
        elif name == "CATEGORY":
            parts.append(_CATEGORIES.get(str(value), "?"))
    return "[" + "".join(parts) + "]"


def _class_char(code: int) -> str:
    char = chr(code)
    if char in "]\\^-[":
        return "\\" + char
    return char if char.isprintable() and char != " " else json.dumps(char)[1:-1] or " "


def _repeat(item: Any, low: int, high: int | None) -> Any:
    """?, *, + as railroad's own shapes; counted repeats as a loop with its count."""
    if (low, high) == (1, 1):
        return item
    if (low, high) == (0, 1):
        return rr.Optional(item)
    if high is None and low <= 1:
        return rr.OneOrMore(item) if low == 1 else rr.ZeroOrMore(item)
    if high is None:
        count = f"at least {low}×"
    elif low == high:
        count = f"{low}×"
    else:
        count = f"{low}–{high}×"
    loop = rr.OneOrMore(item, rr.Comment(count))
    return rr.Optional(loop) if low == 0 else loop


# ---- Lark grammar -----------------------------------------------------------------------


def grammar_svg(grammar: str, limit: Limits, start: str = "start") -> str:
    """One diagram per rule and terminal as written (start first, then in the grammar's
    order), then the %ignore'd terminals."""
    try:
        tree = _parse_grammar(grammar, "<grammar>")
    except LarkError:
        LarkGrammar.from_text(grammar)  # raises the check line's message
        raise ConstraintError("grammar: cannot be read") from None
    budget = _Budget(limit)
    drawn = [(label, _expansions(body, budget, 1)) for label, body in _definitions(tree)]
    _check_grammar(grammar, start)
    drawn.sort(key=lambda pair: _rule_name(pair[0]) != start)  # stable: start first
    return "\n".join(_svg([body], label, budget) for label, body in drawn)


def _check_grammar(grammar: str, start: str) -> None:
    """What lark's loader refuses (undefined names, the %import policy, no start rule), in
    the check line's words, without building the parser: Lark's lexer for a rule of 800
    literals took 20 s, and the check line builds it already."""
    check_imports(grammar)  # before lark reads any %import'ed file
    builder = GrammarBuilder()
    try:
        builder.load_grammar(grammar, "<grammar>")
        builder.validate()
    except (LarkError, KeyError):
        LarkGrammar.from_text(grammar, start)  # fails as fast, at the same step: its message
        raise ConstraintError("grammar: cannot be read") from None
    if start not in builder._definitions:
        raise ConstraintError(f"grammar: no {start!r} rule: the output is parsed from it")


def _rule_name(label: str) -> str:
    return re.sub(r"^[?!]|[{.].*$", "", label.removeprefix("%ignore"))


def _definitions(tree: Tree) -> Iterator[tuple[str, Tree]]:
    """(label as written, its expansions) for each rule, terminal and %ignore."""
    for item in tree.children:
        if not isinstance(item, Tree):
            continue
        how = ""
        if item.data in ("override", "extend"):
            how, item = f"%{item.data} ", item.children[0]
        if item.data == "rule":
            modifiers, name, params, priority, body = item.children
            label = f"{_text(modifiers)}{name}"
            label += "{" + ", ".join(map(str, params.children)) + "}" if params.children else ""
            yield how + label + _priority(priority), body
        elif item.data == "term":
            name, *priority, body = item.children
            yield how + str(name) + (f".{priority[0]}" if priority else ""), body
        elif item.data == "ignore":
            yield "%ignore", item.children[0]


def _text(node: Any) -> str:
    return "".join(map(str, node.children)) if isinstance(node, Tree) else str(node or "")


def _priority(node: Any) -> str:
    value = _text(node)
    return f".{value}" if value else ""


def _expansions(node: Tree, budget: _Budget, depth: int) -> Any:
    budget.node(depth)
    options = [_alias(child, budget, depth) for child in node.children]
    return options[0] if len(options) == 1 else rr.Choice(0, *options)


def _alias(node: Tree, budget: _Budget, depth: int) -> Any:
    if node.data != "alias":
        return _expansion(node, budget, depth)
    expansion, name = node.children
    budget.node(depth)
    return rr.Sequence(_expansion(expansion, budget, depth),
                       rr.Comment(f"→ {_symbol_name(name)}"))


def _expansion(node: Tree, budget: _Budget, depth: int) -> Any:
    budget.node(depth)
    items = [_expr(child, budget, depth) for child in node.children]
    if not items:
        return rr.Skip()
    return items[0] if len(items) == 1 else rr.Sequence(*items)


def _expr(node: Any, budget: _Budget, depth: int) -> Any:
    """An atom, with its ?, *, + or ~ n..m."""
    if not isinstance(node, Tree) or node.data != "expr":
        return _atom(node, budget, depth)
    atom, op, *counts = node.children
    item = _atom(atom, budget, depth + 1)
    if str(op) == "~":
        low = int(counts[0])
        return _repeat(item, low, int(counts[1]) if len(counts) > 1 else low)
    return {"?": rr.Optional, "*": rr.ZeroOrMore, "+": rr.OneOrMore}[str(op)](item)


def _atom(node: Any, budget: _Budget, depth: int) -> Any:
    if isinstance(node, Tree) and node.data == "expansions":
        return _expansions(node, budget, depth + 1)
    if isinstance(node, Tree) and node.data == "maybe":
        return rr.Optional(_expansions(node.children[0], budget, depth + 1))
    budget.node(depth)
    return _value(node.children[0] if isinstance(node, Tree) else node)


def _value(item: Any) -> Any:
    """A reference (rule or terminal name) as a square box; a literal as written."""
    if isinstance(item, lark_grammar.Symbol):
        return rr.NonTerminal(_label(item.name),
                              cls="terminal-name" if item.is_term else "rule-name")
    if isinstance(item, Tree) and item.data == "literal":
        return rr.Terminal(_label(str(item.children[0])))
    if isinstance(item, Tree) and item.data == "range":
        low, high = item.children
        return rr.Terminal(_label(f"{low}..{high}"))
    if isinstance(item, Tree) and item.data == "template_usage":
        name, *args = item.children
        shown = ", ".join(_template_arg(arg) for arg in args)
        return rr.NonTerminal(_label(f"{_symbol_name(name)}{{{shown}}}"))
    return rr.Comment(_label(str(item.data if isinstance(item, Tree) else item)))


def _template_arg(node: Any) -> str:
    item = node.children[0] if isinstance(node, Tree) and node.data == "value" else node
    if isinstance(item, lark_grammar.Symbol):
        return item.name
    if isinstance(item, Tree):
        return " ".join(_template_arg(child) for child in item.children)
    return str(item)


def _symbol_name(item: Any) -> str:
    return item.name if isinstance(item, lark_grammar.Symbol) else str(item)

