"""The page's handlers for a click's stream, copy as code and the history, on the fake
engine (no browser)."""

import asyncio
import time

import gradio as gr

from playground.core.constraints import MODES
from playground.core.settings import SamplingSettings
from playground.run import history
from playground.run.export import Target
from playground.web import controls, page, session_panel
from playground.web.markdown_safe import plain

SKIP = gr.skip()
CONTROLS = controls.controls_from_settings(SamplingSettings(max_tokens=400))


def _run(engine, runs=None, store=None, session_id=""):
    async def collect():
        return [update async for update in page.run_click(
            engine, "regex", "w.*", "p", *CONTROLS, runs=runs, store=store,
            session_id=session_id)]

    return asyncio.run(collect())


def test_a_click_streams_at_most_ten_updates_a_second_and_ends_in_the_history():
    from playground.engines.fake import FakeEngine

    engine = FakeEngine(delay_s=0.005, concurrent=False)
    engine.load()
    words = " ".join(f"w{i}" for i in range(150))
    engine.enqueue(words, words)
    started = time.monotonic()
    updates = _run(engine, runs=[])
    elapsed = time.monotonic() - started
    assert len(updates) <= elapsed * 10 + 4  # ~10 a second, the final one and the history
    last_page, last_history = updates[-2], updates[-1]
    assert last_page[4] != SKIP and "valid" in last_page[4]  # the final verdict came
    assert "| tokens/s (decode) |" in last_page[5]
    runs, rows = last_history[6], last_history[7]
    assert [run.id for run in runs] == [1] and rows[0][:3][2] == "regex"
    assert runs[0].constrained.text == words and runs[0].settings.max_tokens == 400
    # Unchanged values are not sent again: the check message went once.
    assert sum(update[0] != SKIP for update in updates) == 1


def test_a_bad_constraint_is_one_message_and_no_history(fake_engine):
    async def collect():
        return [u async for u in page.run_click(fake_engine, "regex", "a(", "p", *CONTROLS,
                                              runs=[])]

    cleared, update = asyncio.run(collect())
    assert cleared[0] == SKIP and cleared[1] == "" and "running" in cleared[2]
    assert "unterminated subpattern" in update[0]
    assert update[1:] == ("", "", "", "", "", SKIP, SKIP)


def test_a_finished_run_is_saved_for_its_session_under_history_dir(fake_engine, tmp_path):
    store = history.SessionStore(tmp_path)
    session = history.new_session_id()
    fake_engine.enqueue("w1", "w2")
    _run(fake_engine, runs=[], store=store, session_id=session)
    assert [run.constrained.text for run in store.load(session)] == ["w1"]
    session_id, runs, rows = asyncio.run(session_panel.start_session(session, store))
    assert session_id == session and len(runs) == 1 and len(rows) == 1
    fresh, runs, _ = asyncio.run(session_panel.start_session("../../etc/passwd", store))
    assert fresh != "../../etc/passwd" and store.path(fresh) is not None and runs == []


def test_export_text_says_what_to_fix_first():
    text = session_panel.export_text(Target(), "regex", "python", "a(", "p", {})
    assert text.startswith("# Fix this first: regex: missing )")
    text = session_panel.export_text(Target(), "regex", "curl", "[0-9]+", "p", {"max_tokens": 3})
    assert '"regex": "[0-9]+"' in text and '"max_tokens": 3' in text


def _runs(count):
    runs = []
    for i in range(count):
        update = {"mode": "choice" if i % 2 else "json", "engine": {}, "warnings": [],
                  "constrained": {"text": f"c{i}", "verdict": "valid"},
                  "unconstrained": {"text": f"u{i}", "verdict": "invalid"}}
        runs = history.add(runs, history.record(update, f"p{i}", "yes\nno",
                                                SamplingSettings(seed=i), runs))
    return runs


def test_clicking_rows_picks_a_then_b_and_compares_them():
    runs = _runs(3)
    a, b = session_panel.select(runs, None, 0)  # the newest row
    assert (a, b) == (3, None)
    a, b = session_panel.select(runs, a, 2)
    assert (a, b) == (1, 3)
    shown = session_panel.comparison(runs, a, b)
    assert "run #1 (json)" in shown and "run #3 (json)" in shown
    assert "Click two rows" in session_panel.comparison(runs, a, None)


def test_reopen_fills_only_the_runs_tab():
    runs = _runs(2)
    out = session_panel.reopen(runs, 2, page.run_values, width=15)
    assert len(out) == 1 + 15 * len(MODES)
    filled, rest = out[1:16], out[16:]  # the choice tab comes first
    assert filled[:2] == ["p1", "yes\nno"] and filled[5] == 1  # prompt, editor, seed
    assert filled[9] == "c1" and "invalid" in filled[12]
    # The check line as the run left it: an earlier click's red error does not stay.
    assert "Constraint OK" in filled[14] and "bad" not in filled[14]
    assert rest == [SKIP] * 15 * (len(MODES) - 1)
    assert len(page.run_values(runs[0])) == 15


def test_run_a_and_b_are_empty_until_a_row_is_picked():
    """The boxes are text: a number box showed "Run A 0 / Run B 0" before any pick."""
    runs = _runs(2)
    assert session_panel.select(runs, "", 0) == (2, None)
    assert session_panel.select(runs, "2", 1) == (1, 2)
    assert session_panel._id(" 2 ") == 2 and session_panel._id("x") is None
    assert "Click two rows" in session_panel.comparison(runs, "", "")
    assert session_panel.loading("/tmp/x/run.json").startswith("Loading run")
    assert session_panel.loading(None) == ""


def test_the_preset_reads_edited_once_the_prompt_or_constraint_is_changed_by_hand():
    from playground.core.presets import load_presets

    presets = load_presets()
    names = list(presets)
    email = presets["Email address"]
    edited = page.preset_label(presets, names, "Email address", "my prompt",
                               email.constraint_text)
    assert edited.value == "Email address (edited)" and edited.value in edited.choices[-1]
    same = page.preset_label(presets, names, "Email address (edited)", email.prompt,
                             email.constraint_text)
    assert same.value == "Email address" and all("(edited)" not in c[0] for c in same.choices)
    assert page.preset_label(presets, names, "Email address", email.prompt,
                             email.constraint_text) == SKIP
    sql = presets["SQL SELECT"]  # the code editor gives a grammar back without its last "\n"
    assert sql.constraint_text.endswith("\n")
    assert page.preset_label(presets, names, "SQL SELECT", sql.prompt,
                             sql.constraint_text.rstrip("\n")) == SKIP
    picked = page.pick_preset(presets, names, "ISO date")
    assert picked[0].value == "ISO date" and picked[1] == presets["ISO date"].prompt
    assert page.pick_preset(presets, names, "Email address (edited)") == [SKIP] * 10


def test_save_and_load_back_through_the_handlers():
    runs = _runs(3)
    path, message = session_panel.save(runs, None, "history")
    assert message == "3 runs saved."
    restored, rows, message, a, _ = asyncio.run(session_panel.load([], "", None, path))
    assert restored == runs and len(rows) == 3 and a == 3
    assert message == "History of 3 runs restored (verdicts as the file recorded them)."
    path, _ = session_panel.save(runs, 2, "run")
    restored, _, message, a, _ = asyncio.run(session_panel.load(runs, "", None, path))
    assert [run.id for run in restored] == [1, 2, 3, 4] and a == 4
    assert message == "Run loaded as #4 (verdicts as the file recorded them)."
    assert session_panel.save(runs, None, "run")[0] is None


def test_a_bad_upload_is_a_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "structured-playground-history", "kind": "run", "runs": 1}')
    runs = _runs(1)
    kept, _, message, _, _ = asyncio.run(session_panel.load(runs, "", None, str(bad)))
    assert kept == runs and plain("history file: runs: ") in message


def test_compare_backends_draws_its_table_under_the_constrained_strip(fake_engine):
    """The checkbox turns the inspector on too; the unconstrained side gets no table."""
    fake_engine.enqueue('"ab"', "free")

    async def collect():
        return [u async for u in page.run_click(fake_engine, "json", '{"minLength": 3}', "p",
                                              *CONTROLS, compare=True)]

    final = [update for update in asyncio.run(collect()) if update[2] != SKIP][-1]
    constrained_verdict, free_verdict = final[2], final[4]
    assert 'class="tokstrip"' in constrained_verdict  # the inspector ran
    assert "Compare backends: the masks differ at" in constrained_verdict
    assert "guidance refuses this token" in constrained_verdict
    assert "Compare backends" not in free_verdict
