"""Every text field through every entry point, with the texts no library downstream takes:
a lone surrogate, a NUL, deep nesting and one character past the limit. Each is refused in
one line (or, where text is only judged, judged) and a refusal never waits for the model.

The app runs in this process on a slow fake engine with one model slot, so "refused at
once" is measured while another user's run holds the model.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from support import serve_in_process

from playground.core import limits
from playground.engines.base import Chunk
from playground.engines.fake import FakeEngine
from playground.errors import InputError
from playground.run import batch, history
from playground.run.service import run_request

SURROGATE, NUL = "\ud800", "\x00"
DEEP = "[" * 4999 + "]" * 4999  # under the 10,000-character limit of a test string
HOLD_S = 4.0  # how long the other user's run holds the one model slot, unless held longer


@pytest.fixture(scope="module")
def app():
    from gradio_client import Client

    engine = FakeEngine(delay_s=HOLD_S / 4, concurrent=False)
    demo, port = serve_in_process(engine)
    try:
        yield demo, engine, Client(f"http://127.0.0.1:{port}/", verbose=False), port
    finally:
        demo.close()


def _hold_the_model(app, until_released: bool = False) -> threading.Thread:
    """Another user's run of four words, HOLD_S long, holding the only model slot
    (`until_released`: until the test sets engine.hold False, then HOLD_S)."""
    _, engine, client, _ = app
    engine.hold = until_released
    engine.enqueue("yes yes yes yes", "no")
    job = client.submit("choice", "yes\nno", "say yes", None, api_name="/generate")
    deadline = time.monotonic() + 10
    while engine.active == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    waiter = threading.Thread(target=lambda: job.result(timeout=60), daemon=True)
    waiter.start()
    return waiter


GENERATE_CASES = [
    # (id, mode, constraint, prompt, options, words in the refusal)
    ("prompt-surrogate", "choice", "yes\nno", "hi " + SURROGATE, None, "lone surrogate"),
    ("prompt-nul", "choice", "yes\nno", "hi" + NUL, None, "NUL"),
    ("prompt-over-limit", "choice", "yes\nno", "a" * 50_001, None, "--max-prompt-chars"),
    ("system-surrogate", "choice", "yes\nno", "hi", {"system_prompt": SURROGATE},
     "system_prompt"),
    ("system-nul", "choice", "yes\nno", "hi", {"system_prompt": NUL}, "NUL"),
    ("system-over-limit", "choice", "yes\nno", "hi", {"system_prompt": "a" * 20_001},
     "--max-system-prompt-chars"),
    ("stop-surrogate", "choice", "yes\nno", "hi", {"stop": [SURROGATE]}, "stop string 1"),
    ("stop-nul", "choice", "yes\nno", "hi", {"stop": ["a" + NUL]}, "NUL"),
    ("stop-empty", "choice", "yes\nno", "hi", {"stop": [""]}, "cannot be empty"),
    ("stop-over-limit", "choice", "yes\nno", "hi", {"stop": ["a"] * 17}, "--max-stop-strings"),
    ("choice-surrogate", "choice", "yes\n" + SURROGATE, "hi", None, "lone surrogate"),
    ("regex-nul", "regex", "a" + NUL, "hi", None, "NUL"),
    ("json-surrogate", "json", '{"const": "' + SURROGATE + '"}', "hi", None,
     "lone surrogate"),
    ("json-deep", "json", '{"items":' * 100 + "{}" + "}" * 100, "hi", None,
     "--max-json-depth"),
    ("grammar-over-limit", "grammar", 'start: "a"\n' + "// x\n" * 20_000, "hi", None,
     "--max-constraint-chars"),
    ("options-surrogate", "choice", "yes\nno", "hi", '{"system_prompt": "' + SURROGATE + '"}',
     "lone surrogate"),
    ("options-deep", "choice", "yes\nno", "hi", "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("chat-template-text", "choice", "yes\nno", "hi", {"chat_template": "yes"},
     "chat_template"),
    ("lenient-text", "choice", "yes\nno", "hi", {"lenient": "yes"}, "lenient"),
    ("inspect-text", "choice", "yes\nno", "hi", {"inspect": "false"}, "inspect"),
]


def _post(port: int, path: str, payload: dict) -> tuple[int, str]:
    """POST JSON as a plain HTTP client would (escaped: a lone surrogate travels as \\ud800,
    which gradio_client cannot send)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _call(port: int, api_name: str, data: list) -> tuple[str, str]:
    """Gradio's REST API: ("refused", body) for a refusal at the queue, else the event
    ("complete" or "error") and its data from the event stream."""
    status, body = _post(port, f"/gradio_api/call/{api_name}", {"data": data})
    if status != 200:
        return "refused", body
    event_id = json.loads(body)["event_id"]
    url = f"http://127.0.0.1:{port}/gradio_api/call/{api_name}/{event_id}"
    with urllib.request.urlopen(url, timeout=120) as response:
        stream = response.read().decode()
    events = [line.removeprefix("event: ") for line in stream.splitlines()
              if line.startswith("event: ")]
    datas = [line.removeprefix("data: ") for line in stream.splitlines()
             if line.startswith("data: ")]
    return events[-1], datas[-1]


def _message(body: str) -> str:
    """The refusal's message, from a 422's details or an error event's data."""
    found = json.loads(body)
    if isinstance(found, dict) and isinstance(found.get("detail"), list):
        return " ".join(item["message"] for item in found["detail"] if not item["is_valid"])
    return str(found)


@pytest.mark.parametrize(("mode", "constraint", "prompt", "options", "words"),
                         [case[1:] for case in GENERATE_CASES],
                         ids=[case[0] for case in GENERATE_CASES])
def test_generate_refuses_bad_text_in_one_line(app, mode, constraint, prompt, options, words):
    status, body = _post(app[3], "/gradio_api/call/generate",
                         {"data": [mode, constraint, prompt, options]})
    assert status == 422, body
    message = _message(body)
    assert words in message
    assert "Traceback" not in message and "\n" not in message


def test_refusals_never_wait_for_a_busy_model(app):
    """The model is held until every refusal has come back: one that waited for it would
    never come (the request's 10 s timeout); each is timed too, with room for a loaded
    machine (in a full CI run one took 2 s, in the validator's thread, with no run ahead)."""
    _, engine, _, port = app
    waiter = _hold_the_model(app, until_released=True)
    try:
        assert engine.active == 1
        for _, mode, constraint, prompt, options, _ in GENERATE_CASES[:8]:
            started = time.monotonic()
            status, _ = _post(port, "/gradio_api/call/generate",
                              {"data": [mode, constraint, prompt, options]})
            took = time.monotonic() - started
            assert status == 422
            assert took < 5, f"a refusal took {took:.1f} s while another run held the model"
            assert engine.active == 1 and waiter.is_alive()  # the model is still held
    finally:
        engine.hold = False
    waiter.join(timeout=30)
    assert not waiter.is_alive()


def _join(port: int, fn_index: int, data: list) -> tuple[int, str]:
    """queue/join as the page sends it, for any fn_index and any data."""
    return _post(port, "/gradio_api/queue/join",
                 {"data": data, "fn_index": fn_index, "session_hash": "hostile1"})


def _page_run_index(demo) -> int:
    """The choice tab's Run: the first Run event (the tabs' are in mode order)."""
    return next(index for index, fn in demo.fns.items()
                if fn.name == "on_run" and fn.validator is not None
                and fn.validator.__name__ != "validate_batch")


def _batch_run_index(demo) -> int:
    return next(index for index, fn in demo.fns.items()
                if fn.validator is not None and fn.validator.__name__ == "validate_batch")


@pytest.mark.parametrize(("prompts", "max_tokens", "words"), [
    ("fine\nhi " + SURROGATE, 16, "the prompts box: character 9 is a lone surrogate"),
    ("a\u0000", 16, "NUL"),
    ("\n".join(["x"] * 1_001), 16, "--max-batch-prompts"),
    ("\n".join(["y" * 40_000] * 30), 16, "--max-batch-tokens"),
])
def test_the_batch_run_is_refused_at_once_while_the_model_is_busy(app, prompts, max_tokens,
                                                                  words):
    """Run batch through queue/join: refused when it joins (the model is held meanwhile)."""
    demo, engine, _, port = app
    waiter = _hold_the_model(app, until_released=True)
    try:
        started = time.monotonic()
        status, body = _join(port, _batch_run_index(demo),
                             ["choice", "yes\nno", prompts, None,
                              max_tokens, 0.0, 1.0, 0, "", True, ""])
        assert time.monotonic() - started < 5
        assert status == 422, body
        assert words in _message(body) and "Traceback" not in body
        assert engine.active == 1 and waiter.is_alive()
    finally:
        engine.hold = False
    waiter.join(timeout=30)


@pytest.mark.parametrize(("prompt", "stop", "words"), [
    ("hi " + SURROGATE, "", "lone surrogate"),
    ("a" * 50_001, "", "--max-prompt-chars"),
    ("hi", "a\\u0000", "NUL"),
])
def test_the_pages_private_run_event_applies_the_same_checks(app, prompt, stop, words):
    demo, _, _, port = app
    controls = [16, 0.0, 1.0, 0, stop, True, ""]
    status, body = _join(port, _page_run_index(demo),
                         ["choice", "yes\nno", prompt, *controls, False, False, False, [], ""])
    assert status == 422, body
    assert words in _message(body) and "Traceback" not in body


TEST_STRING_CASES = [
    # (id, mode, constraint, strings, refused words or None, validator verdict)
    ("deep-json", "json", '{"type": "array"}', [[DEEP, True]], None, None),
    ("nul-judged", "regex", "a\\x00", [["a" + NUL, True]], None, True),
    ("surrogate", "regex", "a+", [[SURROGATE, True]], "lone surrogate", None),
    ("over-limit", "regex", "a+", [["a" * 10_001, True]], "10,000", None),
    ("constraint-surrogate", "regex", "a" + SURROGATE, [["a", True]], "lone surrogate", None),
]


@pytest.mark.parametrize(("mode", "constraint", "strings", "refused", "verdict"),
                         [case[1:] for case in TEST_STRING_CASES],
                         ids=[case[0] for case in TEST_STRING_CASES])
def test_test_strings_judge_or_refuse_in_one_line(app, mode, constraint, strings, refused,
                                                   verdict):
    event, data = _call(app[3], "test_strings", [mode, constraint, strings])
    if refused:
        assert event == "error", data
        assert refused in _message(data) and "\\n" not in data
        return
    assert event == "complete", data
    rows = json.loads(data)[0]
    assert rows[0]["validator"]["matches"] is verdict
    if verdict is None:
        assert "nested too deeply" in rows[0]["validator"]["errors"][0]


@pytest.mark.parametrize(("schema", "words"), [
    ('{"const": "' + SURROGATE + '"}', "lone surrogate"),
    ('{"type": "string"}' + NUL, "NUL"),
    ('{"items":' * 100 + "{}" + "}" * 100, "--max-json-depth"),
    ('{"description": "' + "a" * 100_001 + '"}', "--max-constraint-chars"),
])
def test_coverage_refuses_bad_schemas_in_one_line(app, schema, words):
    event, data = _call(app[3], "coverage", [schema])
    assert event == "error", data
    assert words in _message(data)


@pytest.mark.parametrize(("content", "words"), [
    ('{"prompt": "a \\ud800"}\n', "lone surrogate"),
    ('{"prompt": "a \\u0000"}\n', "NUL"),
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ('"' + "a" * 50_001 + '"\n', "--max-prompt-chars"),
])
def test_batch_files_refuse_bad_prompts(tmp_path, content, words):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=words.replace("-", r"\-")):
        batch.parse_prompts("", str(path))


@pytest.mark.parametrize(("data", "words"), [
    ('{"format": "structured-playground/history", "runs": [], "x": "\\ud800"}',
     "lone surrogate"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_history_files_refuse_bad_text(data, words):
    with pytest.raises(InputError, match=words):
        history.loads(data)


def test_a_history_file_past_its_limit_is_refused():
    previous = limits.active()
    limits.configure(limits.Limits(max_history_file_bytes=100))
    try:
        with pytest.raises(InputError, match="--max-history-file-bytes"):
            history.loads("x" * 101)
    finally:
        limits.configure(previous)


# ---- the CLI ---------------------------------------------------------------------------


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "playground", "check", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "words"), [
    (["--mode", "json", "--schema", "/dev/zero"], "--max-constraint-chars"),
    (["--mode", "json", "--schema", sys.executable], "not UTF-8 text"),
    (["--mode", "grammar", "--grammar", "/nonexistent/g.lark"], "cannot read"),
    (["--mode", "regex", "--regex", b"a\xff".decode("utf-8", "surrogateescape")],
     "lone surrogate"),
    (["--mode", "regex", "--regex", "a+", "--test-string",
      b"a\xff".decode("utf-8", "surrogateescape")], "lone surrogate"),
    (["--mode", "regex", "--regex", "a+", "--output",
      b"a\xff".decode("utf-8", "surrogateescape")], "lone surrogate"),
])
def test_the_cli_refuses_bad_files_and_text_in_one_line_with_exit_2(args, words):
    started = time.monotonic()
    done = _check(*args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert time.monotonic() - started < 30


def test_the_cli_judges_a_deeply_nested_test_string():
    done = subprocess.run([sys.executable, "-m", "playground", "check", "--mode", "json",
                           "--schema", "/dev/stdin", "--test-string", DEEP],
                          input='{"type": "array"}', capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["test_strings"][0]
    assert row["validator"]["matches"] is None
    assert "nested too deeply" in row["validator"]["errors"][0]


# ---- stop strings and the escape flag ---------------------------------------------------


@pytest.mark.parametrize(("text", "verdict", "escaped"), [
    ("Posi", "truncated", False),  # the stop string "si" cut a valid start
    ("Pxsi", "invalid", True),  # already off the choices before the stop string
])
def test_output_cut_by_a_stop_string_is_an_escape_only_if_off_the_format(text, verdict,
                                                                          escaped):
    engine = FakeEngine()
    engine.load()
    engine.enqueue(Chunk(text=text, finish_reason="stop"), "Positive")
    result = asyncio.run(run_request(engine, "choice", "Positive\nNegative", "Sentiment?",
                                     {"stop": ["si"]}))
    constrained = result["constrained"]
    assert (constrained["verdict"], constrained["constraint_escaped"]) == (verdict, escaped)
    if not escaped:
        assert "cut by the stop string 'si'" in constrained["errors"][0]


def test_integers_past_a_float_are_warned_of_before_the_run():
    from playground.judging.judge import build_constraint

    constraint = build_constraint("json", json.dumps({"enum": [2**200 + 1, 3]}))
    assert any("past 2**53" in warning for warning in constraint.warnings)
    assert not build_constraint("json", '{"enum": [9007199254740992]}').warnings


def test_the_check_line_says_what_this_engine_will_not_enforce():
    from playground.web.page import check_message

    engine = FakeEngine()
    engine.load()
    schema = '{"type": "array", "items": {"type": "integer"}, "uniqueItems": true}'
    line = check_message("json", schema, engine)
    assert "Constraint OK" not in line
    assert "will not enforce" in line and "uniqueItems" in line
    assert "Constraint OK" in check_message("json", '{"type": "integer"}', engine)


@pytest.mark.parametrize(("name", "content", "box", "where", "words"), [
    ("prompts.jsonl", "{not json\n", "", 3, "prompts.jsonl: line 1: not JSON"),
    (None, None, "\n".join(["x"] * 1_001), 2, "--max-batch-prompts"),
    ("many.txt", "\n".join(["x"] * 1_001), "", 3, "--max-batch-prompts"),
    ("gone.txt", None, "", 3, "gone.txt: No such file"),
])
def test_a_batch_refusal_is_shown_on_the_input_it_is_about(tmp_path, name, content, box,
                                                          where, words):
    """Run batch's validator: inputs (mode, constraint, prompts, file, *controls)."""
    from playground.web.batch_tab import validate_batch

    file = None
    if name:
        file = tmp_path / name
        if content is not None:
            file.write_text(content)
        file = str(file)
    answers = validate_batch("choice", "yes\nno", box, file, 16, 0.0, 1.0, 0, "", True, "")
    refused = [index for index, answer in enumerate(answers) if not answer["is_valid"]]
    assert refused == [where], answers
    assert words in answers[where]["message"]
