"""`/share` through gradio_client against a served app (the fake engine: nothing runs), and
the page's share handlers (web/share_view.py) called directly: a link for a tab's state,
one line for a bad one, and a normal request during each hostile one."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import gradio as gr
import pytest
from support import refusal_line, serve_in_process

from playground.core.constraints import MODES
from playground.core.settings import SamplingSettings
from playground.engines.fake import FakeEngine
from playground.run import share
from playground.web import share_view
from playground.web.controls import controls_from_settings

SETTINGS = {"max_tokens": 40, "temperature": 0.8, "seed": 7, "stop": ["\n"]}
NORMAL = ("regex", "[0-9]+", "Count to three", SETTINGS)
WIDTHS = {mode: 14 for mode in MODES}  # page._mode_tab's fields: 9 inputs, 5 results, check


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    demo, port = serve_in_process(FakeEngine())
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_share_returns_a_link_that_restores_the_state(client):
    answer = client.predict(*NORMAL, api_name="/share")
    link = urlsplit(answer["link"])
    assert link.scheme == "http" and link.path == "/"
    assert parse_qs(link.query)["share"] == [answer["token"]]
    state = share.decode(answer["token"])
    assert (state.mode, state.constraint, state.prompt) == NORMAL[:3]
    assert state.settings == SamplingSettings(**SETTINGS)


def test_share_takes_options_as_json_text_too(client):
    answer = client.predict("choice", "a\nb", "", '{"seed": null}', api_name="/share")
    assert share.decode(answer["token"]).settings.seed is None


HOSTILE = [
    (("yaml", "x", "p", {}), "mode: 'yaml' is not a mode"),
    (("regex", 5, "p", {}), "constraint: give the constraint as text, not a number"),
    (("regex", "a" * 5000, "p", {}), "the regex has 5,000 characters; the limit is 4,000"),
    (("json", "{}", "p" * 60_000, {}), "the prompt has 60,000 characters"),
    (("json", "{}", "bad \x00", {}), "prompt: character 5 is a NUL"),
    (("json", "{}", "p", {"temprature": 1}), "options: temprature: Extra inputs"),
    (("json", "{}", "p", "[1"), "options: not a JSON object"),
    # Random text compresses to more than the link may hold.
    (("json", "{}", "".join(chr(0x4E00 + (i * 7919) % 20_000) for i in range(20_000)), {}),
     "the share link has"),
]


@pytest.mark.parametrize(("arguments", "message"), HOSTILE)
def test_a_bad_state_is_one_line_and_a_normal_request_still_completes(client, arguments,
                                                                      message):
    started = time.perf_counter()
    with pytest.raises(Exception) as caught:
        client.predict(*arguments, api_name="/share")
    line = refusal_line(caught.value)
    assert message in line and "\n" not in line, line
    assert client.predict(*NORMAL, api_name="/share")["token"]
    assert time.perf_counter() - started < 10


def test_a_lone_surrogate_sent_as_json_is_one_line(client):
    # gradio_client cannot send one; a plain HTTP client sends it escaped, as \ud800.
    port = urlsplit(client.src).port
    body = json.dumps({"data": ["json", "{}", "bad \ud800", {}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/call/share",
                                     data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        event_id = json.loads(response.read())["event_id"]
    url = f"http://127.0.0.1:{port}/gradio_api/call/share/{event_id}"
    with urllib.request.urlopen(url, timeout=10) as response:
        stream = response.read().decode()
    assert "event: error" in stream
    assert "prompt: character 5 is a lone surrogate (U+D800)" in stream


def test_share_click_gives_a_token_or_the_reason():
    controls = controls_from_settings(SamplingSettings(**SETTINGS))
    token, shown = share_view.share_click("regex", "[0-9]+", "Count", *controls)
    assert shown == "" and share.decode(token).settings.seed == 7
    token, shown = share_view.share_click("regex", "[0-9]+", "Count", 40, 0.8, 1.0, 7,
                                          "\\q", True, "")
    assert token == "" and shown.startswith("Not shared: stop strings: line 1")


def test_restored_fills_the_linked_tab_and_nothing_else():
    state = share.shared_tab("json", '{"type": "string"}', "A word", SETTINGS)
    values = share_view.restored({"share": share.encode(state)}, WIDTHS)
    assert isinstance(values[0], gr.Tabs) and values[0].selected == "json"
    json_tab = values[1 + 14 * MODES.index("json"):][:14]
    assert json_tab[:9] == [state.prompt, state.constraint,
                            *controls_from_settings(state.settings)]
    skip = gr.skip()
    assert all(value == skip for value in json_tab[9:])  # no results, no run
    others = [value for i, value in enumerate(values[1:])
              if i // 14 != MODES.index("json")]
    assert all(value == skip for value in others)


def test_restored_does_nothing_without_a_link():
    assert all(value == gr.skip() for value in share_view.restored({}, WIDTHS))


@pytest.mark.parametrize("token", ["v1.%%%", "v1." + "A" * 10_000_000, "nonsense"])
def test_a_bad_link_leaves_the_defaults_and_says_why_in_one_line(token):
    started = time.perf_counter()
    values = share_view.restored({"share": token}, WIDTHS)
    assert time.perf_counter() - started < 1
    check = values[14]  # the first tab's check line
    assert check.startswith('<span class="bad">share link') and "\n" not in check
    assert all(value == gr.skip() for value in values[:14])
