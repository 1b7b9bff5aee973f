"""A JSON document as it is being written: its partial tree, where a text left JSON, and the
bounds that keep one redraw cheap on a hostile output."""

import json
import time

import pytest

from playground.run import partial_json
from playground.run.partial_json import read, tree_html, view_html
from playground.run.result import RunResult

DOC = json.dumps({"brand": "Toyota", "model": "Supra \"Mk4\" ü😀", "year": 1993,
                  "price": -1.5e3, "tags": ["fast", "iconic"], "sold": True,
                  "engine": {"hp": 320, "turbo": None}})


def _size(value):
    if isinstance(value, dict):
        return 1 + sum(_size(v) + len(k) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_size(v) for v in value)
    return len(str(value)) if isinstance(value, str) else 1


def test_every_prefix_of_a_document_is_viable_and_its_tree_grows():
    sizes = []
    for end in range(len(DOC) + 1):
        shape = read(DOC[:end])
        assert shape.left_at is None, (end, shape)
        assert shape.complete == (end == len(DOC))
        sizes.append(_size(shape.value) if shape.has_value else 0)
    assert sizes == sorted(sizes)  # never shrinks as the text grows
    assert len(set(sizes)) > 20
    assert read(DOC).value == json.loads(DOC)


@pytest.mark.parametrize(("prefix", "value"), [
    ('{"brand": "Toy', {"brand": "Toy"}),  # a string cut mid-way shows what it has
    ('{"a": "x\\', {"a": "x"}),  # ... cut inside an escape
    ('{"a": "x\\u00', {"a": "x"}),
    ('{"a": 12', {"a": 12}),  # a number cut mid-way
    ('{"a": 1.', {"a": 1}),  # ... where it is not yet a number: its digits so far
    ('{"a": -2.5e+', {"a": -2.5}),
    ('{"a": -', {}),
    ('{"a": "1.', {"a": "1."}),  # not in a string
    ('[true', [True]),
    ('{"a": tr', {}),
    ('[1, {"b": [', [1, {"b": []}]),
    ('{"a": 1, "b', {"a": 1}),  # a key cut mid-way is not shown yet
    ('  [', []),
])
def test_values_cut_mid_way(prefix, value):
    shape = read(prefix)
    assert (shape.value, shape.left_at, shape.complete) == (value, None, False)


@pytest.mark.parametrize(("text", "at", "reason", "tree"), [
    ("Sure! Here is the JSON: {}", 0, "expected value", None),
    ('{"a": 1} and more', 9, "trailing characters", {"a": 1}),
    ('{"é😀": "ü" x', 11, "expected `,` or `}`", {"é😀": "ü"}),  # characters, not bytes
    ('{"a":\n  1\n  "b": 2}', 12, "expected `,` or `}`", {"a": 1}),  # past a newline
    ('{"a": NaN}', 6, "expected value", {}),  # JSON has no NaN
    ("[1,]", 3, "trailing comma", [1]),
])
def test_free_text_says_where_it_left_json(text, at, reason, tree):
    shape = read(text)
    assert (shape.left_at, shape.reason, shape.complete) == (at, reason, False)
    # The tree is of the part before: jiter's partial mode alone reads past the error
    # ('{"a": 1 x' as {"a": 1}), so it could not say where the text left JSON.
    assert shape.value == tree


def test_the_tree_is_escaped_and_marks_the_value_being_written():
    shown = tree_html(read('{"<b>": ["<script>x'))
    assert "<script>" not in shown and "&lt;script&gt;x" in shown and "&lt;b&gt;" in shown
    assert shown.count('class="jt-open"') == 1
    assert shown.index('class="jt-open"') < shown.index("&lt;script&gt;x")
    assert 'class="jt-open"' not in tree_html(read(DOC))  # a whole document: nothing open


def test_status_lines():
    viable = view_html(RunResult(text='{"a": 1'), constrained=True)
    assert "still viable" in viable and "valid JSON so far" in viable
    free = view_html(RunResult(text='Sure: {"a": 1} and so on'), constrained=False)
    assert "left JSON at character 0" in free and "still viable" not in free
    # The object after the prose is drawn too, with where it ends.
    assert "a JSON value starts at character 6; it leaves JSON at character 15" in free
    assert '"a"</span>: <span class="jt-num">1</span>' in free
    assert "starts at" not in view_html(RunResult(text="no json here"), constrained=False)
    done = view_html(RunResult(text=DOC, verdict="valid"), constrained=True)
    assert "valid: fits the schema" in done and "a whole JSON document" in done
    escaped = view_html(RunResult(text="{} x", verdict="invalid", constraint_escaped=True),
                        constrained=True)
    assert "escaped" in escaped and "left JSON at character 3" in escaped
    assert view_html(RunResult(), constrained=True) == ""  # nothing written yet


def _timed(text: str) -> tuple[float, str]:
    start = time.perf_counter()
    shown = view_html(RunResult(text=text), constrained=False)
    return time.perf_counter() - start, shown


def test_a_4000_token_output_is_drawn_in_under_2_ms():
    items = ",".join(json.dumps({"name": f"item {i}", "n": i, "ok": i % 2 == 0})
                     for i in range(400))
    text = '{"items": [' + items  # ~16,000 characters, ~4,000 tokens, still open
    assert len(text) > 15_000
    _timed(text)  # warm
    best = min(_timed(text)[0] for _ in range(20))
    assert best < 0.002, best
    shown = _timed(text)[1]
    assert "more)" in shown  # the node limit cut it
    assert shown.count("<li") <= partial_json.MAX_TREE_NODES + 10


@pytest.mark.parametrize("text", [
    "[" * 100_000,  # past jiter's recursion limit
    "[" * 150 + "1",  # deep, within it: drawn to MAX_TREE_DEPTH levels
    '"' + "x" * 2_000_000,  # one huge string, still open
    "1" * 200_000,  # one huge number
    "[" + "0," * 500_000,  # a million values
    '{"a": "' + "\\" * 300_001,  # escapes
], ids=["deep", "deep-drawn", "string", "number", "wide", "escapes"])
def test_hostile_outputs_stay_bounded(text):
    elapsed, shown = _timed(text)
    assert elapsed < 0.1, elapsed
    assert len(shown) < 100_000
    assert shown.count("<ul>") <= partial_json.MAX_TREE_DEPTH + 2


def test_long_outputs_are_read_only_to_the_limit():
    text = "[" + "1," * partial_json.MAX_PARSE_CHARS
    shape = read(text)
    assert shape.read_chars == partial_json.MAX_PARSE_CHARS < shape.total_chars
    assert not shape.complete and shape.left_at is None
    assert f"the first {partial_json.MAX_PARSE_CHARS:,} of" in tree_html(shape)
