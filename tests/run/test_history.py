"""History (pure functions and files) and the comparison views."""

import json
from pathlib import Path
from typing import get_args

import pytest

from playground.core.limits import Limits, configure
from playground.core.settings import SamplingSettings
from playground.errors import InputError
from playground.run import history
from playground.run.result import INSPECT_FIELDS, RunResult, RunStatus
from playground.web.side_by_side import compare_runs, metrics_table

DONE = {"text": '{"a": 1}', "verdict": "valid", "errors": [], "prompt_tokens": 12,
        "output_tokens": 8, "latency_s": 0.5, "ttft_s": 0.1, "tokens_per_s": 17.5,
        "compile_s": 0.01, "finish_reason": "stop", "engine_timings": {},
        "constraint_escaped": False,
        "tokenization": {"canonical": True, "tokens": 7, "canonical_tokens": 7,
                         "first_difference": None}}
FREE = {**DONE, "text": "Sure! Here", "verdict": "invalid", "errors": ["not JSON"],
        "tokenization": None,
        "output_tokens": 10, "latency_s": 0.6, "tokens_per_s": 20.0, "compile_s": None,
        "finish_reason": "length"}


def _update(constrained=DONE, free=FREE, mode="json"):
    return {"mode": mode, "engine": {"name": "fake"}, "warnings": ["w"],
            "constrained": dict(constrained), "unconstrained": dict(free)}


def _history(count):
    runs = []
    for i in range(count):
        runs = history.add(runs, history.record(_update(), f"prompt {i}", "{}",
                                                SamplingSettings(seed=i), runs))
    return runs


@pytest.fixture(autouse=True)
def default_limits():
    yield
    configure(Limits())


def test_record_keeps_everything_a_run_showed():
    run = history.record(_update(), "p", '{"type": "object"}', SamplingSettings(), [])
    assert run.id == 1 and run.mode == "json" and run.warnings == ["w"]
    assert run.constrained.model_dump(include=set(DONE)) == DONE
    assert run.unconstrained.verdict == "invalid"


def test_a_run_with_infinite_numbers_is_kept_without_them():
    """A file refuses inf and nan; a run an engine timed so is still kept."""
    update = _update()
    update["constrained"] = {**update["constrained"], "tokens_per_s": float("inf"),
                             "engine_timings": {"vllm_ttft_s": float("nan"), "x_s": 0.5}}
    run = history.record(update, "p", "{}", SamplingSettings(), [])
    assert run.constrained.tokens_per_s is None
    assert run.constrained.engine_timings == {"x_s": 0.5}
    history.loads(history.dumps([run], "run"))


# ---- the one run result model (playground.run.result) ----------------------------------

STRIP = [{"text": "y", "id": 121, "allowed": 2, "kind": "narrowed", "override": True,
          "logprob": -1.6, "rank": 2,
          "top": [{"text": "m", "id": 109, "logprob": -0.5, "allowed": False}]}]
SUMMARY = {"tokens": 1, "forced": 0, "narrowed": 1, "free": 0, "overrides": 1,
           "mean_logprob": -1.6, "mean_logprob_constrained": -1.6,
           "mean_logprob_unconstrained": -0.5, "backend": "xgrammar"}
INSPECTED = {**DONE, "tokens": STRIP, "inspect_summary": SUMMARY, "left_format_at": None,
             "inspect_s": 0.02, "inspect_error": None, "mask_diff": None}


@pytest.mark.parametrize("side", [DONE, INSPECTED, {**FREE, "verdict": "stopped",
                                                    "finish_reason": "stopped"}])
def test_a_result_round_trips_through_a_history_file(side):
    """What the API answered is what a saved and loaded run answers again."""
    run = history.record(_update(constrained=side), "p", "{}", SamplingSettings(), [])
    loaded = history.loads(history.dumps([run], "run")).runs[0]
    assert loaded == run
    assert loaded.constrained.as_dict() == side
    assert isinstance(loaded.constrained, RunResult)


def test_the_inspectors_fields_are_in_an_answer_only_when_inspected():
    plain = RunResult(**DONE)
    assert set(plain.as_dict()) == set(DONE)
    asked = RunResult(**DONE)
    asked._token_ids = []  # the service's mark of a run to inspect, from its start
    assert set(asked.as_dict()) == set(DONE) | INSPECT_FIELDS
    assert {asked.as_dict()[name] for name in INSPECT_FIELDS} == {None}
    # A history file always has them (null when not inspected), and never the token ids.
    saved = json.loads(history.dumps(_history(1), "run"))["runs"][0]["constrained"]
    assert set(saved) == set(RunResult.model_fields) == set(DONE) | INSPECT_FIELDS | {
        "tool_calls"}
    assert {saved[name] for name in INSPECT_FIELDS | {"tool_calls"}} == {None}


@pytest.mark.parametrize(("side", "where"), [
    ({"tokens_per_s": float("inf")}, "tokens_per_s"),
    ({"latency_s": float("nan")}, "latency_s"),
    ({"engine_timings": {"vllm_ttft_s": float("-inf")}}, "engine_timings.vllm_ttft_s"),
    ({"token_ids": [1, 2]}, "token_ids: Extra inputs are not permitted"),
    ({"verdict": "finished"}, "verdict: Input should be"),
])
def test_a_file_refuses_what_a_result_cannot_hold(side, where):
    data = json.loads(history.dumps(_history(1), "run"))
    data["runs"][0]["constrained"].update(side)
    with pytest.raises(InputError, match=f"runs.0.constrained.{where}"):
        history.loads(json.dumps(data))


def test_every_status_of_a_run_is_one_a_file_takes():
    for status in get_args(RunStatus):
        side = {**DONE, "verdict": status}
        run = history.record(_update(constrained=side), "p", "{}", SamplingSettings(), [])
        assert history.loads(history.dumps([run], "run")).runs[0].constrained.verdict == status


def test_history_keeps_the_last_50_numbered_in_order():
    runs = _history(53)
    assert len(runs) == 50
    assert [run.id for run in runs] == list(range(4, 54))
    rows = history.table(runs)
    assert rows[0][0] == 53 and rows[-1][0] == 4  # newest first
    assert rows[0][2:] == ["json", "prompt 52", "valid", "invalid", 17.5, 20.0]
    assert len(rows[0]) == len(history.COLUMNS)


def test_long_prompts_are_shortened_in_the_table():
    run = history.record(_update(), "word " * 40, "{}", SamplingSettings(), [])
    assert history.table([run])[0][3].endswith("…")


@pytest.mark.parametrize("kind", ["history", "run"])
def test_a_file_loads_back_exactly(kind):
    runs = _history(3) if kind == "history" else _history(3)[1:2]
    loaded = history.loads(history.dumps(runs, kind))
    assert loaded.kind == kind and loaded.runs == runs


def test_loading_a_history_replaces_and_a_run_adds():
    saved = _history(3)
    restored, shown = history.restore(_history(1), history.loads(history.dumps(saved,
                                                                               "history")))
    assert restored == saved and shown == saved[-1]
    mine = _history(2)
    restored, shown = history.restore(mine, history.loads(history.dumps(saved[:1], "run")))
    assert [run.id for run in restored] == [1, 2, 3]  # #1 is taken: renumbered
    assert shown.id == 3 and shown.prompt == saved[0].prompt


def _run_data(**changes):
    data = json.loads(history.dumps(_history(1), "history"))["runs"][0]
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return data


def _file(**changes):
    data = json.loads(history.dumps(_history(2), "history"))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "history file: not JSON"),
        ("[1, 2]", "not a structured-playground-history file"),
        (json.dumps({"runs": []}), "not a structured-playground-history file"),
        (_file(extra=1), "history file: extra: Extra inputs are not permitted"),
        (_file(version=2), "history file: version: Input should be 1"),
        (_file(kind="batch"), "history file: kind: "),
        (_file(runs=[{"id": 1}]), "history file: runs.0.created: Field required (and "),
        (_file(runs=json.loads(history.dumps(_history(1) * 2, "history"))["runs"]),
         "a run number is used twice"),
        (_file(runs=[_run_data(created="9999-12-31T23:59:59-14:00")]),
         "runs.0.created: Value error, not an ISO 8601 time"),
        (_file(runs=[_run_data(created="yesterday")]), "runs.0.created"),
        (_file(runs=[_run_data(constrained={"tokens_per_s": float("inf")})]),
         "runs.0.constrained.tokens_per_s"),
        ('{"format": "structured-playground-history", "runs": ' + "[" * 100_000
         + "]" * 100_000 + "}", "nested too deeply"),
        ('{"format": "structured-playground-history", "id": ' + "9" * 5000 + "}",
         "not readable JSON"),
    ],
)
def test_a_bad_file_is_one_clear_line(data, message):
    with pytest.raises(InputError) as caught:
        history.loads(data)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_files_and_histories_are_size_limited(tmp_path):
    configure(Limits(max_history_file_bytes=100))
    with pytest.raises(InputError, match="max-history-file-bytes"):
        history.loads("x" * 101)
    big = tmp_path / "big.json"
    big.write_text("x" * 101)
    with pytest.raises(InputError, match="max-history-file-bytes"):
        history.load_file(big)
    two = history.dumps(_history(2), "history")
    configure(Limits(max_history_runs=1))
    with pytest.raises(InputError, match="max-history-runs"):
        history.loads(two)


def test_download_writes_a_file_that_loads_back():
    runs = _history(2)
    path = history.download(runs[:1], "run")
    assert Path(path).name == "run-1.json"
    assert history.load_file(path).runs == runs[:1]


def test_session_store_keys_files_by_the_random_id_only(tmp_path):
    store = history.SessionStore(tmp_path)
    session = history.new_session_id()
    assert store.load(session) == []
    store.save(session, _history(2))
    assert store.load(session) == _history(2)
    assert [p.name for p in tmp_path.iterdir()] == [f"{session}.json"]
    other = history.new_session_id()
    assert store.load(other) == []  # another session sees nothing of this one
    for bad in ["../etc/passwd", "alice", "", None, session + "x", "a/" + session[2:]]:
        assert store.path(bad) is None
        store.save(bad, _history(1))
        assert store.load(bad) == []
    assert len(list(tmp_path.iterdir())) == 1


def test_a_damaged_session_file_starts_afresh(tmp_path):
    store = history.SessionStore(tmp_path)
    session = history.new_session_id()
    store.path(session).write_text("{")
    assert store.load(session) == []


# ---- comparison views ------------------------------------------------------------------


def test_one_table_has_both_sides_and_their_difference():
    table = metrics_table(DONE, FREE).splitlines()
    assert table[0] == "| metric | constrained | unconstrained | difference |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["output tokens"] == "| output tokens | 8 | 10 | -2 |"
    assert rows["total latency"] == "| total latency | 0.500 s | 0.600 s | -0.100 s |"
    assert rows["tokens/s (decode)"] == "| tokens/s (decode) | 17.5 | 20.0 | -2.5 (×0.88) |"
    assert rows["grammar compile"] == "| grammar compile | 0.010 s | – |  |"
    assert rows["finish reason"] == "| finish reason | stop | length | differs |"


def test_the_table_while_running_and_with_engine_timings():
    running = metrics_table({"output_tokens": 3}, {})
    assert "| tokens/s (decode) | – | – |  |" in running
    timed = metrics_table({**DONE, "engine_timings": {"vllm_ttft_s": 0.2}},
                          {**FREE, "engine_timings": {"vllm_ttft_s": 0.05}})
    # The name is escaped for Markdown (shown as typed: it may come from a loaded file).
    assert r"| engine: vllm\_ttft\_s | 0.200 s | 0.050 s | +0.150 s |" in timed


def test_two_runs_side_by_side_mark_what_differs():
    a, b = _history(2)
    b = b.model_copy(update={"constrained": b.constrained.model_copy(
        update={"text": "<b>x</b>"})})
    page = compare_runs(a, b)
    assert "run #1 (json)" in page and "run #2 (json)" in page
    assert "<tr class=differs><th>setting: seed</th><td>0</td><td>1</td></tr>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "<tr><th>mode</th>" in page  # same mode: not marked


@pytest.mark.parametrize(("field", "value"), [
    ("verdict", "valid<img src=x onerror=alert(1)>"),
    ("tokens", [{"text": "a", "kind": 'forced" onmouseover="alert(1)', "top": []}]),
    ("tokens", [{"text": "a", "kind": "forced", "rank": "<img src=x>", "top": []}]),
    ("inspect_summary", {"forced": "<script>"}),
])
def test_a_hostile_run_file_cannot_put_markup_in_the_page(field, value):
    """A run file is shared between users: whatever reaches the page's HTML is typed."""
    good = json.loads(history.dumps(_history(1), "run"))
    good["runs"][0]["constrained"][field] = value
    with pytest.raises(InputError, match="history file"):
        history.loads(json.dumps(good))


def test_the_verdict_badge_escapes_whatever_it_is_given():
    from playground.web.page import verdict_html

    assert "<img" not in verdict_html({"verdict": "<img src=x onerror=alert(1)>"})
