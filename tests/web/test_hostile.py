"""The hostile suite: bad, huge and slow inputs through `/generate` (gradio_client against a
served app), the CLI and the batch parser. Each gets a clear one-line error or a correct
verdict within its limit, and a normal request sent *during* each completes in seconds.

The app runs in this process on an echo engine (it writes back the prompt after "Repeat
exactly: "), so every verdict is known in advance; the real CPU model has a few cases
marked slow at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from support import refusal_line, serve_in_process

from playground.core import limits
from playground.engines.base import Chunk, SamplingSettings
from playground.engines.fake import END, FakeEngine
from playground.errors import InputError

ECHO = "Repeat exactly: "
VALIDATION_S = 2.0  # the suite's --validation-timeout-s: unjudged cases end quickly
NORMAL_MAX_S = 3.0  # a normal request during any hostile one finishes within this


class EchoEngine(FakeEngine):
    """Writes back what follows "Repeat exactly: ", cut at max tokens (words)."""

    context_length = 8192

    def count_prompt_tokens(self, prompt: str, settings: SamplingSettings) -> int:
        return len(prompt) // 4

    async def stream(self, prompt, constraint, settings, inspect=False):
        words = prompt.removeprefix(ECHO).split(" ")
        cut = len(words) > settings.max_tokens
        text = " ".join(words[:settings.max_tokens])
        await asyncio.sleep(0.01)
        yield Chunk(text=text, output_tokens=len(words), token_ids=list(text.encode()))
        yield Chunk(done=True, output_tokens=min(len(words), settings.max_tokens),
                    finish_reason="length" if cut else "stop", prompt_tokens=len(prompt) // 4,
                    compile_s=0.0 if constraint else None, token_ids=[] if cut else [END])


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    previous = limits.active()
    limits.configure(limits.Limits(validation_timeout_s=VALIDATION_S))
    demo, port = serve_in_process(EchoEngine())
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(*NORMAL, api_name="/generate")  # the first request warms the page up
        yield client
    finally:
        demo.close()
        limits.configure(previous)
        if TIMINGS:  # shown with -s; the README's table comes from these
            print("\ncase | normal request meanwhile (s) | hostile request (s)")
            for name, normal_s, hostile_s in TIMINGS:
                print(f"{name} | {normal_s:.2f} | {hostile_s:.2f}")


def _deep_schema(levels: int) -> str:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema}
    return json.dumps(schema)


BRACKETS = "[" * 5000 + "]" * 5000
AMBIGUOUS = 'start: x+\nx: "a" | x x\n'
A28 = "a" * 28 + "!"
REMOTE = '{"type": "object", "properties": {"a": {"$ref": "%s"}}}'

# (id, mode, constraint, prompt, options, expected): expected is ("error", words in the
# message) or ("verdict", the constrained verdict).
CASES = [
    # -- arguments of the wrong type or missing
    ("mode-null", None, "a", ECHO + "a", None, ("error", "mode:")),
    ("mode-unknown", "xml", "a", ECHO + "a", None, ("error", "is not a mode")),
    ("mode-number", 5, "a", ECHO + "a", None, ("error", "mode:")),
    ("constraint-null", "regex", None, ECHO + "a", None, ("error", "constraint: give")),
    ("constraint-number", "regex", 123, ECHO + "a", None, ("error", "constraint: give")),
    ("prompt-null", "regex", "a", None, None, ("error", "prompt: give")),
    ("prompt-number", "regex", "a", 42, None, ("error", "prompt: give")),
    ("prompt-empty", "regex", "a", "", None, ("error", "write a prompt")),
    ("prompt-blank", "regex", "a", "   \n ", None, ("error", "write a prompt")),
    ("options-not-json", "regex", "a", ECHO + "a", "not json", ("error", "options: not a JSON")),
    ("options-list", "regex", "a", ECHO + "a", "[1, 2]", ("error", "give an object")),
    ("options-brackets", "regex", "a", ECHO + "a", BRACKETS, ("error", "options:")),
    ("options-unknown-key", "regex", "a", ECHO + "a", '{"colour": 1}', ("error", "colour")),
    ("max-tokens-text", "regex", "a", ECHO + "a", '{"max_tokens": "many"}',
     ("error", "max_tokens")),
    ("max-tokens-negative", "regex", "a", ECHO + "a", '{"max_tokens": -1}',
     ("error", "max_tokens")),
    ("max-tokens-true", "regex", "a", ECHO + "a", '{"max_tokens": true}',
     ("error", "must be a number, not bool")),
    ("lenient-yes", "json", "{}", ECHO + "{}", '{"lenient": "yes"}', ("error", "lenient")),
    ("inspect-1", "regex", "a", ECHO + "a", '{"inspect": 1}', ("error", "inspect")),
    ("max-tokens-huge", "regex", "a", ECHO + "a", '{"max_tokens": 100000}',
     ("error", "max_tokens")),
    ("seed-2**70", "regex", "a", ECHO + "a", json.dumps({"seed": 2**70}), ("error", "seed")),
    ("seed--2**70", "regex", "a", ECHO + "a", json.dumps({"seed": -2**70}), ("error", "seed")),
    ("temperature-text", "regex", "a", ECHO + "a", '{"temperature": "hot"}',
     ("error", "temperature")),
    ("top-p-zero", "regex", "a", ECHO + "a", '{"top_p": 0}', ("error", "top_p")),
    ("stop-not-list", "regex", "a", ECHO + "a", '{"stop": 5}', ("error", "stop")),
    ("stop-many", "regex", "a", ECHO + "a", json.dumps({"stop": [str(i) for i in range(40)]}),
     ("error", "--max-stop-strings")),
    ("system-prompt-huge", "regex", "a", ECHO + "a", json.dumps({"system_prompt": "s" * 30000}),
     ("error", "--max-system-prompt-chars")),
    # -- sizes
    ("prompt-1MB", "regex", "a", "x" * 1_000_010, None, ("error", "--max-prompt-chars")),
    ("prompt-over-context", "regex", "a", ECHO + "word " * 9548, None,
     ("error", "context of 8,192 tokens")),
    ("prompt-plus-max-tokens", "regex", "a", ECHO + "x" * 30000, '{"max_tokens": 1000}',
     ("error", "lower max tokens")),
    ("max-tokens-8192-in-context", "regex", "a", ECHO + "a", '{"max_tokens": 8192}',
     ("error", "context")),
    ("regex-1MB", "regex", "a" * 1_000_000, ECHO + "a", None, ("error", "--max-constraint-chars")),
    ("regex-5000", "regex", "a" * 5000, ECHO + "a", None, ("error", "--max-regex-chars")),
    ("choices-100000", "choice", "\n".join(f"c{i}" for i in range(100_000)), ECHO + "c1", None,
     ("error", "--max-constraint-chars")),
    ("choices-3000", "choice", "\n".join(f"c{i}" for i in range(3000)), ECHO + "c1", None,
     ("error", "--max-choices")),
    ("enum-50000", "json", json.dumps({"enum": list(range(50_000))}), ECHO + "1", None,
     ("error", "--max-constraint-chars")),
    ("schema-120-levels", "json", _deep_schema(120), ECHO + "[]", None,
     ("error", "--max-json-depth")),
    ("json-brackets", "json", BRACKETS, ECHO + "[]", None, ("error", "--max-json-depth")),
    ("regex-brackets", "regex", BRACKETS, ECHO + "a", None, ("error", "--max-regex-chars")),
    ("grammar-brackets", "grammar", BRACKETS, ECHO + "a", None, ("error", "grammar:")),
    ("choice-brackets", "choice", BRACKETS, ECHO + BRACKETS, None, ("verdict", "valid")),
    # -- nothing outside
    ("ref-http", "json", REMOTE % "http://127.0.0.1:9/x.json", ECHO + "{}", None,
     ("error", "points outside the schema")),
    ("ref-file", "json", REMOTE % "file:///etc/passwd", ECHO + "{}", None,
     ("error", "points outside the schema")),
    ("ref-relative", "json", REMOTE % "other.json#/a", ECHO + "{}", None,
     ("error", "$defs")),
    ("ref-cycle", "json", '{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}',
     ECHO + "1", None, ("error", "$ref cycle")),
    ("ref-cycle-allof", "json", '{"$defs": {"a": {"anyOf": [{"type": "integer"}, '
     '{"allOf": [{"$ref": "#/$defs/a"}]}]}}, "$ref": "#/$defs/a"}', ECHO + "1", None,
     ("error", "$ref cycle")),
    ("ref-recursive-tree", "json", '{"$defs": {"n": {"type": "object", "properties": {"k": '
     '{"type": "array", "items": {"$ref": "#/$defs/n"}}}}}, "$ref": "#/$defs/n"}',
     ECHO + '{"k": [{"k": []}]}', None, ("verdict", "valid")),
    ("lark-import-relative", "grammar", "start: x\n%import .secret (x)\n", ECHO + "a", None,
     ("error", "%import .secret is not allowed")),
    ("lark-import-module", "grammar", "start: x\n%import os.path (x)\n", ECHO + "a", None,
     ("error", "is not allowed")),
    ("lark-import-common", "grammar", "start: INT\n%import common.INT\n", ECHO + "42", None,
     ("verdict", "valid")),
    # -- clear messages for bad constraints
    ("choice-control-nul", "choice", "a\x00b\nc", ECHO + "c", None, ("error", "U+0000")),
    ("choice-control-esc", "choice", "a\x1bb\nc", ECHO + "c", None, ("error", "U+001B")),
    ("choice-duplicate", "choice", "a\na", ECHO + "a", None, ("error", "listed twice")),
    ("choice-empty", "choice", "\n\n", ECHO + "a", None, ("error", "at least one choice")),
    ("regex-empty", "regex", "", ECHO + "a", None, ("error", "empty")),
    ("regex-unbalanced", "regex", "(", ECHO + "a", None, ("error", "regex:")),
    ("regex-markdown-image", "regex", "![a](http://127.0.0.1:9999/pixel.png)(", ECHO + "a", None,
     ("error", "regex:")),
    ("json-not-json", "json", "{", ECHO + "{}", None, ("error", "invalid JSON")),
    ("json-bad-type", "json", '{"type": "foo"}', ECHO + "1", None, ("error", "schema invalid")),
    ("grammar-empty", "grammar", " ", ECHO + "a", None, ("error", "empty")),
    ("grammar-undefined", "grammar", "start: missing\n", ECHO + "a", None, ("error", "grammar:")),
    # -- slow to judge: linear or bounded
    ("regex-(a+)+$-28", "regex", "(a+)+$", ECHO + A28, None, ("verdict", "invalid")),
    ("regex-(a+)+b-40", "regex", "(a+)+b", ECHO + "a" * 40 + "!", None, ("verdict", "invalid")),
    ("regex-backreference", "regex", r"(a+)+\1$", ECHO + "a" * 40 + "!", None,
     ("verdict", "unjudged")),
    ("regex-lookahead", "regex", "(?=a)(a+)+$", ECHO + "a" * 40 + "!", None,
     ("verdict", "unjudged")),
    ("regex-repeat-2000", "regex", "a{2000}", ECHO + "a" * 2000, None, ("verdict", "valid")),
    ("regex-unicode-digit", "regex", r"\d+", ECHO + "٣", None, ("verdict", "invalid")),
    ("grammar-ambiguous-400", "grammar", AMBIGUOUS, ECHO + "a" * 400, None,
     ("verdict", "unjudged")),
    ("grammar-ambiguous-8", "grammar", AMBIGUOUS, ECHO + "a" * 8, None, ("verdict", "valid")),
    # RE2 reads a schema's pattern in linear time (Python re backtracked here past the limit).
    ("json-pattern-backtracks", "json", '{"type": "string", "pattern": "^(a+)+$"}',
     ECHO + '"' + "a" * 40 + '!"', None, ("verdict", "invalid")),
    ("json-output-brackets", "json", "{}", ECHO + BRACKETS, None, ("verdict", "unjudged")),
    ("json-valid", "json", '{"type": "integer"}', ECHO + "7", None, ("verdict", "valid")),
    ("cut-at-max-tokens", "regex", "[a-z ]+", ECHO + "a b c d e", '{"max_tokens": 2}',
     ("verdict", "truncated")),
]
NORMAL = ("choice", "yes\nno", ECHO + "yes", None)


def _hostile_timeout(expected: tuple[str, str]) -> float:
    # Input errors answer at once; a verdict may take the validation limit (twice: both
    # runs are judged, by two workers), a cut output a worker's first matcher import.
    return 15.0 if expected[0] == "error" else 4 * VALIDATION_S + 60.0


@pytest.mark.parametrize(("mode", "constraint", "prompt", "options", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_input_through_the_api(client, mode, constraint, prompt, options, expected):
    from gradio_client.exceptions import AppError, ValidationError

    started = time.monotonic()
    job = client.submit(mode, constraint, prompt, options, api_name="/generate")
    normal_start = time.monotonic()
    normal = client.predict(*NORMAL, api_name="/generate")
    normal_s = time.monotonic() - normal_start
    assert normal["constrained"]["verdict"] == "valid"
    try:
        result = job.result(timeout=_hostile_timeout(expected))
        error = None
    except (AppError, ValidationError) as exc:
        result, error = None, refusal_line(exc)
    hostile_s = time.monotonic() - started
    TIMINGS.append((case_id(mode, constraint, prompt, options), normal_s, hostile_s))
    kind, words = expected
    if kind == "error":
        assert error is not None, f"expected an error, got {result and result['constrained']}"
        assert words in error
        assert "Traceback" not in error and "/site-packages/" not in error
        assert len(error.splitlines()) == 1
    else:
        assert error is None, error
        assert result["constrained"]["verdict"] == words, result["constrained"]
        if words == "unjudged":
            assert "not judged" in " ".join(result["constrained"]["errors"])
    assert normal_s < NORMAL_MAX_S, f"a normal request took {normal_s:.1f} s meanwhile"


TIMINGS: list[tuple[str, float, float]] = []  # (case, normal request s, hostile request s)


def case_id(*args) -> str:
    return next(case[0] for case in CASES if case[1:5] == args)


def test_the_suite_has_sixty_api_inputs():
    assert len(CASES) >= 60


# ---- the CLI ---------------------------------------------------------------------------

CLI_CASES = [
    ("regex-(a+)+$", ["--mode", "regex", "--regex", "(a+)+$", "--output", A28], 0, "invalid"),
    ("regex-backreference", ["--mode", "regex", "--regex", r"(a+)+\1$", "--output", A28,
                             "--validation-timeout-s", "1"], 0, "unjudged"),
    ("grammar-ambiguous", ["--mode", "grammar", "--grammar", "{ambiguous}", "--output", "a" * 400,
                           "--validation-timeout-s", "1"], 0, "unjudged"),
    ("lark-import", ["--mode", "grammar", "--grammar", "{import}"], 2, "not allowed"),
    ("ref-remote", ["--mode", "json", "--schema", "{remote}"], 2, "points outside the schema"),
    ("ref-cycle", ["--mode", "json", "--schema", "{cycle}"], 2, "$ref cycle"),
    ("regex-too-long", ["--mode", "regex", "--regex", "a" * 5000], 2, "--max-regex-chars"),
    ("regex-limit-raised", ["--mode", "regex", "--regex", "a" * 5000, "--max-regex-chars",
                            "6000", "--output", "a" * 5000], 0, "valid"),
    ("choice-control", ["--mode", "choice", "--choice", "a\x01", "--choice", "b"], 2, "U+0001"),
    ("json-deep", ["--mode", "json", "--schema", "{deep}"], 2, "--max-json-depth"),
]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_hostile_input_through_the_cli(tmp_path, args, code, words):
    files = {"ambiguous": AMBIGUOUS, "import": "start: x\n%import .secret (x)\n",
             "remote": REMOTE % "https://example.com/s.json",
             "cycle": '{"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}',
             "deep": _deep_schema(120)}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [str(tmp_path / a[1:-1]) if a.startswith("{") and a[1:-1] in files else a
            for a in args]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "playground", "check", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == code, done.stderr
    if code == 0:
        assert json.loads(done.stdout)["verdict"] == words
    else:
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert took < 10


# ---- batch files and the page's controls ------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    (b"caf\xe9\n", "not UTF-8"),
    (b"x\n" * 1001, "--max-batch-prompts"),
    (b"x" * 5_000_001, "--max-batch-file-bytes"),
    (b"x" * 60_000 + b"\n", "--max-prompt-chars"),
], ids=["non-utf8", "1001-prompts", "5MB", "long-prompt"])
def test_bad_batch_files_are_input_errors(tmp_path, content, words):
    from playground.run.batch import parse_prompts

    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=words.replace("-", r"\-")):
        parse_prompts("", path)


def test_a_batch_of_many_long_prompts_is_refused_for_its_total_work():
    from playground.run.batch import check_work

    with pytest.raises(InputError, match="--max-batch-tokens"):
        check_work(["x" * 50_000] * 1000, 128)  # the issue's 50 MB file: ~13 hours on a CPU


def test_a_stop_line_with_a_bad_escape_is_an_input_error():
    from playground.web.controls import options_from_controls

    with pytest.raises(InputError, match="line 1"):
        options_from_controls(8, 0, 1, None, "bad\\q", True, "")


def test_messages_in_markdown_show_as_typed():
    from playground.web.page import check_message

    message = check_message("regex", "![a](http://127.0.0.1:9999/pixel.png)(")
    assert "![" not in message and "](" not in message and "<img" not in message
    assert r"\!\[a\]\(http" in message


# ---- the real CPU model ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "constraint", "prompt", "options", "expected"), [
    ("regex", "(a+)+b", ECHO + "a" * 40 + "!", {"max_tokens": 16}, {"invalid", "truncated"}),
    ("grammar", AMBIGUOUS, "Write the letter a 96 times.", {"max_tokens": 32},
     {"valid", "truncated", "unjudged", "invalid"}),
    ("regex", "a", "word " * 9_000, {"max_tokens": 8}, "context of 8,192 tokens"),
], ids=["regex-backtracking", "grammar-ambiguous", "prompt-over-context"])
def test_hostile_input_on_the_cpu_model(embedded_engine, mode, constraint, prompt, options,
                                        expected):
    from playground.run.service import run_request

    started = time.monotonic()
    try:
        result = asyncio.run(run_request(embedded_engine, mode, constraint, prompt, options))
    except InputError as exc:
        assert isinstance(expected, str) and expected in str(exc)
        return
    assert isinstance(expected, set)
    assert result["constrained"]["verdict"] in expected
    assert time.monotonic() - started < 120
