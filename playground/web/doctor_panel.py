"""The constraint doctor on the page: coverage table (JSON and Tool call tabs), test
strings (every tab), what the engine is sent, the lenient switch, and their API endpoints.

Handlers are plain synchronous functions: Gradio runs them in worker threads, off the
event loop, and each bounds its own work (coverage has a time limit).
"""

from __future__ import annotations

import html
import json
import threading
from typing import Any

import gradio as gr
from cachetools import LRUCache

from playground.backends.names import MATCHER_BACKENDS
from playground.core import limits
from playground.core.constraints import JsonSchema, Mode, ToolCalls
from playground.core.text_fields import check_text
from playground.doctor import dialect as dialect_mod
from playground.doctor import lenient as lenient_mod
from playground.doctor import sent as sent_mod
from playground.doctor import test_strings as strings_mod
from playground.engines.base import Engine
from playground.errors import ConstraintError, InputError, WorkerDied, WorkersBusy, WorkTimeout
from playground.judging import workers
from playground.judging.judge import build_constraint
from playground.web.markdown_safe import plain

COVERAGE_TIME_LIMIT_S = 15.0
# Test strings are judged in a killable worker: a string can make Python `re` (a pattern RE2
# refuses) or an ambiguous grammar's parse run for hours.
MAX_TEST_STRINGS = 50
MAX_TEST_STRING_CHARS = 10_000
TEST_COLUMNS = ["string", "expected", "validator", *MATCHER_BACKENDS, "flag"]
TEST_WIDTHS = ["16%", "14%", "26%", *["15%"] * len(MATCHER_BACKENDS), "14%"]
LABEL_MARKS = {"enforced": "enforced", "not enforced": "NOT ENFORCED",
               "rejected": "REJECTED", "untested": "untested"}


def coverage_backends(engine: Engine) -> list[str]:
    """The engine's own backend first; vLLM's validation columns only on a vLLM engine
    (importing vLLM on the CPU app would cost seconds and a gigabyte for a column)."""
    from playground.doctor.testers import available_backends

    own = sent_mod.engine_backend(engine)
    found = available_backends(include_vllm=own.startswith("vllm:"))
    return [own] + [b for b in found if b != own] if own in found else found


def coverage_view(engine: Engine, text: str, mode: str = "json"
                  ) -> tuple[dict[str, Any], str]:
    """(Dataframe value, a line under it) for the schema in the editor; in the Tool call
    tab, for each allowed tool's parameters schema (rows led by the tool's name)."""
    backends = coverage_backends(engine)
    headers = coverage_headers(backends)
    empty = {"headers": headers, "data": []}
    try:
        constraint = build_constraint(mode, text)
    except (ConstraintError, InputError) as exc:
        return empty, f"<small>{plain(str(exc))}</small>"
    tools = isinstance(constraint, ToolCalls)
    if not tools and not isinstance(constraint.schema, dict):
        return empty, "<small>A boolean schema has no keywords.</small>"
    try:
        table = coverage_table(constraint, backends)
    except TimeoutError as exc:
        return empty, f"<small>Coverage gave up: {plain(str(exc))}</small>"
    rows = [[row.path, row.keyword, *[LABEL_MARKS.get(row.backends.get(b, ""), "")
                                      for b in backends]] for row in table.rows]
    own = backends[0]
    missing = table.not_enforced(own)
    # Only the paths are the user's (schema keys): the panel's own Markdown stays live.
    # The Tool call tab has no lenient run to point to.
    line = ("Full coverage on this engine's backend." if table.full(own) else
            f"Not enforced here: {plain(', '.join(missing))}." + (
                "" if tools else " Tick *Generate anyway (lenient)* to run with what it "
                                 "can enforce."))
    notes = "".join(f"<br>{plain(note)}" for note in table.notes)
    return {"headers": headers, "data": rows}, f"<small>{line}{notes}</small>"


# Coverage tables by (schema, backends): the table and the check line follow the same
# edit, and each schema is worked out once (a second asker waits for the first's answer).
_tables: LRUCache[tuple[str, tuple[str, ...]], Any] = LRUCache(maxsize=64)
_working: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}
_tables_lock = threading.Lock()


def coverage_headers(backends: list[str]) -> list[str]:
    return ["path", "keyword", *[f"{b} (this engine)" if i == 0 else b
                                 for i, b in enumerate(backends)]]


def coverage_widths(backends: list[str]) -> list[str]:
    """Column widths that add up to the panel: sized by their text, the backends' columns
    ran past its right edge (a long path, NOT ENFORCED, six vLLM columns)."""
    share = 53 / len(backends)  # 99% in all: at 100% rounding left a scrollbar
    return ["28%", "18%", *[f"{share:.1f}%"] * len(backends)]


def bounded_coverage(schema: Any, backends: list[str]) -> Any:
    """The coverage table from a worker process killed past the limit (a compiler given a
    huge schema may not return for minutes): TimeoutError then."""
    return _bounded(_schema_key(schema), schema, backends, tools=False)


def bounded_tools_coverage(tools: list[tuple[str, Any]], backends: list[str]) -> Any:
    """`bounded_coverage` of a tool set's (name, parameters) pairs: one worker call, one
    time limit for all the tools."""
    return _bounded(_tools_key(tools), tools, backends, tools=True)


def _schema_key(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True)


def _tools_key(tools: list[tuple[str, Any]]) -> str:
    # The prefix keeps the key apart from any schema's (a JSON dump never starts so).
    return "tools:" + json.dumps(tools, sort_keys=True)


def _bounded(subject: str, argument: Any, backends: list[str], tools: bool) -> Any:
    key = (subject, tuple(backends))
    with _tables_lock:
        working = _working.setdefault(key, threading.Lock())
    with working:
        with _tables_lock:
            if key in _tables:
                return _tables[key]
        try:
            table = _coverage_in_worker(argument, backends, tools)
        finally:
            with _tables_lock:
                _working.pop(key, None)
        with _tables_lock:
            _tables[key] = table
        return table


def _coverage_in_worker(argument: Any, backends: list[str], tools: bool = False) -> Any:
    from functools import partial

    from playground.doctor.coverage import coverage, tools_coverage
    from playground.doctor.testers import warm
    from playground.judging import workers

    try:
        return workers.side_call(tools_coverage if tools else coverage, argument, backends,
                                 COVERAGE_TIME_LIMIT_S,
                                 timeout=COVERAGE_TIME_LIMIT_S + 15,
                                 setup=partial(warm, backends))
    except WorkerDied as exc:
        raise TimeoutError(str(exc)) from None


def not_enforced_here(engine: Engine, constraint: Any, compute: bool = True) -> list[str]:
    """What of a JSON Schema, or of the allowed tools' parameters schemas (paths led by the
    tool's name), this engine's backend will not enforce (the coverage table's own
    column), for the check line; nothing where coverage could not say in time.
    `compute`: False to answer only from tables already worked out (a run holding the
    model must not wait for the doctor)."""
    if not _has_coverage(constraint):
        return []
    backends = coverage_backends(engine)
    if not compute:
        with _tables_lock:
            table = _tables.get((_table_key(constraint), tuple(backends)))
        return table.not_enforced(backends[0]) if table is not None else []
    try:
        return coverage_table(constraint, backends).not_enforced(backends[0])
    except (TimeoutError, WorkersBusy, WorkTimeout, ConstraintError, InputError):
        return []


def _has_coverage(constraint: Any) -> bool:
    """A tool set, or a JSON Schema with keywords (a boolean schema has none)."""
    return isinstance(constraint, ToolCalls) or (
        isinstance(constraint, JsonSchema) and isinstance(constraint.schema, dict))


def _table_key(constraint: JsonSchema | ToolCalls) -> str:
    """The cache key `coverage_table` files the constraint's table under."""
    if isinstance(constraint, ToolCalls):
        return _tools_key(_tool_schemas(constraint))
    return _schema_key(constraint.schema)


def coverage_table(constraint: JsonSchema | ToolCalls, backends: list[str]) -> Any:
    """The schema's table, or the allowed tools' (bounded, cached: see `_bounded`)."""
    if isinstance(constraint, ToolCalls):
        return bounded_tools_coverage(_tool_schemas(constraint), backends)
    return bounded_coverage(constraint.schema, backends)


def _tool_schemas(constraint: ToolCalls) -> list[tuple[str, Any]]:
    from playground.doctor.coverage import tool_schemas

    return tool_schemas(constraint)


COVERAGE_MODES = ("json", "tool")


def coverage_details(engine: Engine, text: str, mode: str = "json") -> list[dict[str, Any]]:
    """The `/coverage` endpoint: the table as `check --coverage` gives it, of a schema
    (mode "json") or of the Tool call tab's JSON (mode "tool", `check --tools`)."""
    if mode not in COVERAGE_MODES:
        raise _input_error(f'mode: "json" (a schema) or "tool" (the Tool call tab\'s '
                           f"JSON), not {mode!r}")
    constraint = _parse(mode, text)
    assert isinstance(constraint, JsonSchema | ToolCalls)
    try:
        return coverage_table(constraint, coverage_backends(engine)).as_list()
    except TimeoutError as exc:
        raise _input_error(f"coverage gave up: {exc}") from None


def sent_view(engine: Engine, mode: str, text: str, lenient: bool) -> Any:
    """The constraint as the engine will receive it (after conversion, lenient or not)."""
    try:
        constraint = build_constraint(mode, text)
    except (ConstraintError, InputError) as exc:
        return gr.update(value=f"# {exc}", language=None)
    backend = sent_mod.engine_backend(engine)
    header = ""
    if lenient:
        try:
            relaxed = lenient_mod.bounded_lenient(constraint, backend, COVERAGE_TIME_LIMIT_S,
                                             view=True)
        except TimeoutError as exc:
            return gr.update(value=f"# lenient schema not found: {exc}", language=None)
        constraint = relaxed.constraint
        header = f"lenient ({relaxed.how}); not enforced: {', '.join(relaxed.not_enforced)}"
    found = sent_mod.sent(constraint, backend, engine.any_whitespace)
    language = found["language"] if found["language"] in ("json",) else None
    comment = "//" if language == "json" else "#"
    top = f"{comment} {backend} receives this" + (f" — {header}" if header else "")
    return gr.update(value=f"{top}\n{found['text']}" if language != "json" else found["text"],
                     language=language, label=top.removeprefix(comment).strip())


def dialect_view(mode: str, text: str, backend: str = "xgrammar") -> str:
    """Where the engine's backend reads the regex (or the schema's patterns, or the
    grammar) differently from the validator, found by probing them; what only other
    backends read differently is folded away, so a demo shows only what matters here."""
    try:
        constraint = build_constraint(mode, text)
    except (ConstraintError, InputError):
        return ""
    notes = dialect_mod.bounded_dialect_notes(constraint, limits.active().compile_timeout_s)
    own = backend.removeprefix("vllm:")  # the dialect is the library's, checked or not
    here = dialect_mod.dialect_lines([n for n in notes if dialect_mod.affects(n, own)])
    elsewhere = dialect_mod.dialect_lines([n for n in notes if not dialect_mod.affects(n, own)])
    shown = "".join(f'<br><span class="warn">Dialect:</span> <small>{plain(line)}</small>'
                    for line in here[:8])
    if elsewhere:
        # An HTML block: Markdown reads nothing inside it, so HTML escaping alone keeps it
        # text; on one line, since a blank line would end the block.
        folded = "<br>".join(html.escape(" ".join(line.split())) for line in elsewhere[:8])
        shown += (f'\n\n<details class="dialect-more"><summary><small>Dialect notes '
                  f"({len(elsewhere)}): none changes what {html.escape(own)} enforces here"
                  f"</small></summary><small>{folded}</small></details>")
    return shown


def test_strings_view(mode: str, text: str, cases: str) -> dict[str, Any]:
    """Dataframe rows: each string, its expectation, the validator's and each backend's."""
    try:
        constraint = build_constraint(mode, text)
    except (ConstraintError, InputError) as exc:
        return {"headers": TEST_COLUMNS, "data": [["", "", str(exc), "", "", ""]]}
    try:
        results = bounded_test_strings(constraint, strings_mod.parse_cases(cases))
    except InputError as exc:
        return {"headers": TEST_COLUMNS, "data": [["", "", str(exc), "", "", ""]]}
    return {"headers": TEST_COLUMNS, "data": strings_mod.test_rows(results)}


def _input_error(message: str) -> gr.Error:
    """The API's answer to bad input: one line for the user, no traceback in the log."""
    return gr.Error(message, print_exception=False)


def _case(index: int, item: Any) -> tuple[str, bool | None]:
    """One test string of the API, typed: text a string, expect true, false or null."""
    if isinstance(item, dict):
        unknown = set(item) - {"text", "expect"}
        if unknown:
            raise _input_error(f"strings[{index}]: unknown key {sorted(unknown)[0]!r}")
        text, expect = item.get("text"), item.get("expect")
    elif isinstance(item, list) and 1 <= len(item) <= 2:
        text, expect = item[0], item[1] if len(item) > 1 else None
    else:
        text, expect = item, None
    if not isinstance(text, str):
        raise _input_error(f"strings[{index}]: the text must be a string, not "
                           f"{type(text).__name__}")
    if expect is not None and not isinstance(expect, bool):
        raise _input_error(f"strings[{index}]: expect must be true, false or null, not "
                           f"{expect!r}")
    return text, expect


def api_test_strings(mode: str, constraint: str, strings: list[Any] | str
                     ) -> list[dict[str, Any]]:
    """The `/test_strings` endpoint. `strings`: a list of {"text", "expect"} (expect true,
    false or null), of [text, expect] pairs, or the box's `+ `/`- ` lines as one string."""
    built = _parse(mode, constraint)
    if isinstance(strings, str):
        cases = strings_mod.parse_cases(strings)
    elif isinstance(strings, list):
        cases = [_case(index, item) for index, item in enumerate(strings)]
    else:
        raise _input_error("strings: give a list of {\"text\", \"expect\"} objects, of "
                           "[text, expect] pairs, or the box's lines as one string")
    try:
        return bounded_test_strings(built, cases)
    except InputError as exc:
        raise _input_error(str(exc)) from None


def bounded_test_strings(constraint: Any, cases: list[tuple[str, bool | None]]
                         ) -> list[dict[str, Any]]:
    """`strings_mod.test_strings` within limits: how many, how long, and how much time."""
    if len(cases) > MAX_TEST_STRINGS:
        raise InputError(f"test strings: {len(cases)} given, at most {MAX_TEST_STRINGS}")
    for number, (text, _) in enumerate(cases, start=1):
        check_text(f"test string {number}", text, nul=True)
    if any(len(text) > MAX_TEST_STRING_CHARS for text, _ in cases):
        raise InputError(f"test strings: each at most {MAX_TEST_STRING_CHARS:,} characters")
    limit = limits.active().compile_timeout_s
    try:
        return workers.side_call(strings_mod.test_strings, constraint, cases, timeout=limit)
    except WorkersBusy as exc:
        raise InputError(f"test strings: {exc}") from None
    except WorkTimeout:
        raise InputError(f"test strings: gave up after {limit:g} s (a backtracking regex or "
                         "an ambiguous grammar; --compile-timeout-s raises it)") from None
    except WorkerDied:
        raise InputError("test strings: the worker judging them ended (out of memory?)"
                         ) from None


def _parse(mode: str, text: str) -> Any:
    try:
        return build_constraint(mode, text)
    except ConstraintError as exc:
        raise _input_error(str(exc)) from None
    except InputError as exc:
        raise _input_error(str(exc)) from None


# ---- layout ----------------------------------------------------------------------------


def lenient_checkbox(mode: Mode) -> gr.Checkbox:
    return gr.Checkbox(False, label="Generate anyway (lenient)", elem_id=f"{mode}-lenient",
                       info="send what the backend can enforce; judge by the full "
                            "constraint", visible=mode == "json")


def doctor_parts(engine: Engine, mode: Mode, editor: Any, lenient: gr.Checkbox,
                 tab: gr.Tab) -> None:
    """Under the editor: the dialect notes and what is sent (every mode); both follow the
    editor as the user types, and are filled when the tab or the panel is opened (not
    when the page is built: the grammar's conversion imports xgrammar, hence torch)."""
    if mode != "choice":
        dialect = gr.Markdown(elem_id=f"{mode}-dialect")
        gr.on([tab.select, editor.change],
              lambda text: dialect_view(mode, text, sent_mod.engine_backend(engine)), editor,
              dialect, api_name=False, trigger_mode="always_last", show_progress="hidden")
    with gr.Accordion("What the engine receives", open=False) as sent_panel:
        sent = gr.Code(language=None, interactive=False, elem_id=f"{mode}-sent",
                       label="the constraint as sent")
    gr.on([sent_panel.expand, editor.change, lenient.change],
          lambda text, on: sent_view(engine, mode, text, bool(on)), [editor, lenient], sent,
          api_name=False, trigger_mode="always_last", show_progress="hidden")


def test_strings_parts(mode: Mode, editor: Any) -> None:
    """Test strings, beside the results: six columns were cut off under the editor."""
    with gr.Accordion("Test strings", open=False):
        cases = gr.Textbox(label="One per line: `+ text` should match, `- text` should not",
                           lines=4, elem_id=f"{mode}-test-strings",
                           placeholder="+ a string that should match\n- one that should not")
        test = gr.Button("Test", elem_id=f"{mode}-test")
        # Widths that add up to the panel, so the backends' columns are not cut off past
        # its right edge by a long validator message; long cells wrap.
        results = gr.Dataframe(headers=TEST_COLUMNS, wrap=True, interactive=False,
                               column_widths=TEST_WIDTHS, max_chars=160,
                               elem_id=f"{mode}-test-results")
    test.click(lambda text, lines: test_strings_view(mode, text, lines), [editor, cases],
               results, api_name=False)


def coverage_parts(engine: Engine, mode: Mode, editor: Any, tab: gr.Tab) -> None:
    """The JSON tab's coverage table (beside the editor), or the Tool call tab's (each
    tool's parameters), following the editor as the user types; filled when the tab is
    opened."""
    if mode not in ("json", "tool"):
        return
    title = ("Coverage: what each backend enforces of this schema" if mode == "json" else
             "Coverage: what each backend enforces of each tool's parameters")
    with gr.Accordion(title, open=True):
        backends = coverage_backends(engine)
        table = gr.Dataframe(headers=coverage_headers(backends), wrap=True,
                             interactive=False, column_widths=coverage_widths(backends),
                             elem_id=f"{mode}-coverage")
        summary = gr.Markdown(elem_id=f"{mode}-coverage-summary")
    gr.on([tab.select, editor.change], lambda text: coverage_view(engine, text, mode), editor,
          [table, summary], api_name=False, trigger_mode="always_last",
          show_progress="hidden")


def add_api(engine: Engine) -> None:
    """`/test_strings` and `/coverage` (no model: they never wait for the engine).
    `/coverage` answers the list `check --coverage` gives, as JSON text, of a schema;
    `/tool_coverage` the same of the Tool call tab's JSON (`check --coverage --tools`)."""

    def test_strings(mode: str, constraint: str, strings: list[Any] | str
                     ) -> list[dict[str, Any]]:
        return api_test_strings(mode, constraint, strings)

    def coverage(schema: str | dict[str, Any]) -> str:
        # As JSON text: gradio_client would take each row's "path" for a file to download.
        return json.dumps(coverage_details(engine, _as_text(schema)))

    # An endpoint of its own, not a second argument of /coverage: gradio refuses a call
    # that sends fewer inputs than the function has, so every one-argument caller broke.
    def tool_coverage(tools: str | dict[str, Any]) -> str:
        return json.dumps(coverage_details(engine, _as_text(tools), "tool"))

    gr.api(test_strings, api_name="test_strings")
    gr.api(coverage, api_name="coverage")
    gr.api(tool_coverage, api_name="tool_coverage")


def _as_text(document: str | dict[str, Any]) -> str:
    return document if isinstance(document, str) else json.dumps(document)
