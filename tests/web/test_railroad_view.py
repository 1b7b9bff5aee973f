"""The Diagram box of the regex and grammar tabs: drawn in a worker within its limits, one
line in its place past any of them, a normal edit drawn as usual."""

import re
import time

import pytest

from playground.core.limits import Limits, configure
from playground.web.railroad_view import diagram_html

QUICK_S = 10.0  # a fresh worker's start included, on two busy cores


def note(shown: str) -> str:
    found = re.fullmatch(r'<small class="diagram-note">([^<\n]*)</small>', shown)
    assert found, shown[:300]
    return found.group(1)


@pytest.mark.parametrize(("mode", "text", "flag"), [
    ("regex", "(" + "|".join(f"w{i}" for i in range(5_000)) + ")", "--max-regex-chars"),
    ("regex", "(" * 10_000 + "a" + ")" * 10_000, "--max-regex-chars"),
    ("grammar", "start: " + " | ".join(f'"a{i}"' for i in range(20_000)),
     "--max-constraint-chars"),
    ("grammar", "start: r0\n" + "".join(f'r{i}: "a{i}" r{i + 1}\n' for i in range(4_000))
     + 'r4000: "z"\n', "--max-diagram-nodes"),
    ("grammar", "start: " + "(" * 10_000 + '"a"' + ")" * 10_000, "--max-diagram-depth"),
    ("grammar", "start: (", "Unclosed parenthesis"),
], ids=["regex-alternation", "regex-10000-deep", "grammar-200000-chars", "grammar-4000-rules",
        "grammar-10000-deep", "grammar-invalid"])
def test_a_hostile_constraint_gets_one_line_within_its_limits(mode, text, flag):
    started = time.monotonic()
    assert flag in note(diagram_html(mode, text))
    assert time.monotonic() - started < QUICK_S


def test_a_normal_edit_draws_and_a_second_look_is_kept():
    text = '?start: pair\npair: WORD "=" WORD ("," pair)*\n%import common.WORD'
    shown = diagram_html("grammar", text)
    assert shown.startswith('<div class="railroad-box"><svg') and shown.count("<svg") == 2
    started = time.monotonic()
    assert diagram_html("grammar", text) == shown
    assert time.monotonic() - started < 0.05  # from the cache, no worker


def test_drawing_past_the_time_limit_is_one_line_and_not_kept():
    # Reading 4,000 rules takes the worker ~0.4 s: never within 0.05 s.
    text = "start: r0\n" + "".join(f'r{i}: "b{i}" r{i + 1}\n' for i in range(4_000)) + 'r4000: "z"'
    configure(Limits(diagram_timeout_s=0.05))
    try:
        shown = diagram_html("grammar", text)
    finally:
        configure(Limits())
    assert "--diagram-timeout-s" in note(shown)
    assert "--max-diagram-nodes" in note(diagram_html("grammar", text))  # worked out now
