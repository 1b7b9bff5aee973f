"""Railroad diagrams of regexes and grammars: every preset draws, the drawing shows what was
written, hostile constraints get one line within their limits, and a user's text cannot
put markup into the page."""

import re
import time

import pytest

from playground.core.limits import Limits
from playground.core.presets import load_presets
from playground.doctor.railroad import diagram
from playground.errors import ConstraintError, LimitError

LIMITS = Limits()
PRESETS = [(name, preset.mode, preset.constraint_text) for name, preset in load_presets().items()
           if preset.mode in ("regex", "grammar")]
QUICK_S = 3.0  # well inside --diagram-timeout-s (5 s), on two busy cores


def labels(svg: str) -> list[str]:
    """The text of every box, label and comment, as the browser reads it."""
    import html

    return [html.unescape(text) for text in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


@pytest.mark.parametrize(("name", "mode", "text"), PRESETS, ids=[p[0] for p in PRESETS])
def test_every_regex_and_grammar_preset_draws(name, mode, text):
    svg = diagram(mode, text, LIMITS)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    if mode == "grammar":
        assert labels(svg)[0].removeprefix("?") == "start"  # the start rule comes first
        assert svg.count("<svg") == len(re.findall(r"^[?!]?\w+(\.\d+)?:", text, re.M))


@pytest.mark.parametrize(("mode", "text", "shown"), [
    # Alternatives, sequences and repetition as written; terminals as literals or names.
    ("grammar", '?start: sum\nsum: NUMBER ("+" NUMBER)*\nNUMBER: /[0-9]+/',
     ["?start", "sum", "NUMBER", '"+"', "/[0-9]+/"]),
    ("grammar", 'start: "a" | "b" b?\nb: "c"+ -> many', ['"a"', '"b"', "b", '"c"', "→ many"]),
    ("grammar", 'start: "x"~2..4 "y"~3 "a".."z"', ['"x"', "2–4×", "3×", '"a".."z"']),
    ("grammar", 'start: [item] _sep{"a"}\n_sep{x}: x ("," x)*\nitem: "i"\n',
     ["item", '_sep{"a"}', "_sep{x}"]),
    ("grammar", "start: WORD\n%import common.WORD\n%import common.WS\n%ignore WS",
     ["start", "WORD", "%ignore", "WS"]),
    # Literal runs as one quoted box; a character class as one box.
    ("regex", r"\w+@\w+\.(com|org|net)", [r"\w", '"@"', '"."', '"com"', '"org"', '"net"']),
    ("regex", r"[a-z][^0-9\s-]?x{2,3}y{4}z{2,}", ["[a-z]", r"[^0-9\s\-]", "2–3×", "4×",
                                                 "at least 2×"]),
    ("regex", r"(?P<year>\d{4})-\1\b.", ["year", "4×", "same as group year",
                                         r"\b word boundary", "any character"]),
])
def test_the_diagram_shows_what_was_written(mode, text, shown):
    found = labels(diagram(mode, text, LIMITS))
    for label in shown:
        assert label in found, (label, found)


def test_choices_and_repetitions_have_their_shapes():
    one = diagram("regex", "a", LIMITS)
    more = diagram("regex", "(a|b)+c*d?", LIMITS)
    # Each branch, loop or bypass is another path: many more than a single box has.
    assert more.count("<path") > 3 * one.count("<path")


@pytest.mark.parametrize(("mode", "text", "flag"), [
    ("grammar", "start: r0\n" + "".join(f'r{i}: "a{i}" r{i + 1}\n' for i in range(5_000))
     + 'r5000: "z"\n', "--max-diagram-nodes"),  # thousands of rules, 100,000 characters
    ("grammar", "start: " + " | ".join(f'"a{i}"' for i in range(10_000)) + "\n",
     "--max-diagram-nodes"),
    ("grammar", "start: " + "(" * 10_000 + '"a"' + ")" * 10_000 + "\n", "--max-diagram-depth"),
    ("grammar", "start: " + '("x" ' * 40 + '| "a"' + ")+" * 40 + "\n", "--max-diagram-depth"),
    ("regex", "x?" * 1_900, "--max-diagram-nodes"),  # under --max-regex-chars
    ("regex", "(" * 10_000 + "a" + ")" * 10_000, "nested too deeply"),
    ("regex", "(x|" * 61 + "a" + ")+" * 61, "--max-diagram-depth"),
], ids=["5000-rules", "10000-alternatives", "10000-deep", "40-deep-loops", "regex-1900-boxes",
        "regex-10000-deep", "regex-61-deep-loops"])
def test_hostile_constraints_get_one_line_quickly(mode, text, flag):
    started = time.monotonic()
    with pytest.raises(LimitError) as caught:
        diagram(mode, text, LIMITS)
    assert time.monotonic() - started < QUICK_S
    message = str(caught.value)
    assert flag in message and "\n" not in message and len(message) < 300


def test_the_svg_size_has_its_own_limit():
    text = "start: " + " | ".join(f'"{"w" * 50}{i}"' for i in range(300))
    assert len(diagram("grammar", text, LIMITS)) > 20_000
    with pytest.raises(LimitError, match="--max-diagram-bytes"):
        diagram("grammar", text, Limits(max_diagram_bytes=20_000))


def test_a_long_literal_is_cut_not_drawn_a_mile_wide():
    svg = diagram("grammar", f'start: "{"a" * 100_000}"', Limits(max_constraint_chars=200_000))
    assert len(svg) < 5_000 and "…" in svg


@pytest.mark.parametrize(("mode", "text", "message"), [
    ("grammar", "start: (\n", "grammar: Unclosed parenthesis, at line 1 column 9"),
    ("grammar", "start: foo\n", "grammar: Rule 'foo' used but not defined"),
    ("grammar", 'foo: "a"\n', "grammar: no 'start' rule"),
    ("grammar", '%import os.path\nstart: "a"\n', "%import os.path is not allowed"),
    ("grammar", "start: " + " ".join(f'"a{i}"' for i in range(14_000))[:99_990] + "\n",
     "grammar: Unexpected input at line 1"),
    ("regex", "a(", "regex: missing ), unterminated subpattern at position 1"),
    ("regex", "", "regex: the pattern is empty"),
])
def test_an_invalid_constraint_gets_its_check_line(mode, text, message):
    started = time.monotonic()
    with pytest.raises(ConstraintError) as caught:
        diagram(mode, text, LIMITS)
    assert time.monotonic() - started < QUICK_S
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_grammar_of_hundreds_of_literals_draws_without_building_a_parser():
    # Lark's own lexer for these 1,400 literals takes minutes; drawing needs none.
    started = time.monotonic()
    diagram("grammar", "start: " + " ".join(f'"a{i}"' for i in range(1_400)), LIMITS)
    assert time.monotonic() - started < QUICK_S


@pytest.mark.parametrize(("mode", "text"), [
    ("grammar", 'start: "<script>alert(1)</script>" | "</svg><img src=x onerror=alert(1)>"'),
    ("grammar", 'start: X "&amp;"\nX: /<\\/svg><b onclick="x">/'),
    ("regex", r"<script>alert\(1\)</script>|</svg><img src=x onerror=alert\(1\)>"),
    ("regex", '[<>"&]</svg>'),
])
def test_a_constraint_cannot_put_markup_into_the_page(mode, text):
    svg = diagram(mode, text, LIMITS)
    tags = set(re.findall(r"</?([a-zA-Z]+)", svg))
    assert tags <= {"svg", "g", "path", "rect", "text"}, tags
    assert "onerror" not in re.sub(r"<text[^>]*>[^<]*</text>", "", svg)
    assert any("<" in label for label in labels(svg))  # shown as text, not dropped


def test_only_regex_and_grammar_are_drawn():
    with pytest.raises(ConstraintError, match="only regex and grammar"):
        diagram("json", "{}", LIMITS)
