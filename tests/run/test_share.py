"""Share links (run/share.py): every mode's state round-trips; a malformed, forged or huge
link is one line naming what is wrong, within its limits, in milliseconds."""

from __future__ import annotations

import base64
import json
import random
import time
import zlib

import pytest

from playground.core import limits
from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings
from playground.errors import InputError, LimitError
from playground.run import share

SETTINGS = {"max_tokens": 77, "temperature": 0.65, "top_p": 0.9, "seed": 2**40,
            "stop": ["\n\n", "END"], "chat_template": False, "system_prompt": "Be brief. é"}
STATES = [
    ("choice", "Positive\nNegative\nNeutral", "Classify: I like it."),
    ("regex", r"[a-z]+@[a-z]+\.(com|org)", "An email address, please"),
    ("json", '{"type": "object", "properties": {"city": {"type": "string"}}}', "Where? 🗼"),
    ("grammar", 'start: "SELECT " NAME\nNAME: /[a-z]+/', ""),  # no prompt yet: shareable
]


def token_of(payload: bytes, version: str = "v1") -> str:
    """A hand-made token: `payload` compressed and encoded as share.encode does."""
    body = base64.urlsafe_b64encode(zlib.compress(payload, 9)).rstrip(b"=").decode()
    return f"{version}.{body}"


def token_for(fields: object) -> str:
    return token_of(json.dumps(fields).encode())


@pytest.mark.parametrize(("mode", "constraint", "prompt"), STATES)
def test_every_mode_round_trips_its_state(mode, constraint, prompt):
    state = share.shared_tab(mode, constraint, prompt, SETTINGS)
    token = share.encode(state)
    assert token.startswith("v1.") and "=" not in token
    assert share.decode(token) == state
    assert share.decode(token).settings == SamplingSettings(**SETTINGS)


def test_every_preset_makes_a_link_within_the_limit():
    for name, preset in load_presets().items():
        state = share.shared_tab(preset.mode, preset.constraint_text, preset.prompt,
                                 preset.settings.model_dump())
        token = share.encode(state)
        assert len(token) < limits.active().max_share_chars / 2, name
        assert share.decode(token) == state, name


def test_a_random_seed_and_default_settings_round_trip():
    state = share.shared_tab("regex", "[0-9]+", "Count", {"seed": None})
    assert share.decode(share.encode(state)).settings.seed is None
    assert share.decode(share.encode(state)).settings.max_tokens == 128


def test_link_adds_the_token_and_keeps_other_query_parameters():
    made = share.link("http://host:7860/app/?__theme=dark&share=old#top", "v1.abc")
    assert made == "http://host:7860/app/?__theme=dark&share=v1.abc"
    assert share.link("", "v1.abc") == "?share=v1.abc"


def test_request_options_are_checked_and_left_out():
    state = share.shared_tab("choice", "a\nb", "p", {"inspect": True, "seed": 3})
    assert state.settings.seed == 3 and "inspect" not in state.model_dump_json()
    with pytest.raises(InputError, match="options: inspect"):
        share.shared_tab("choice", "a\nb", "p", {"inspect": "yes"})


def _bomb() -> str:
    """A token within the size limit (7,800 characters) that unpacks to 6 MB, over five
    times what a state within the limits can take (zlib's best ratio is ~1,000)."""
    return token_of(b'{"mode": "json", "prompt": "' + b" " * 6_000_000 + b'"}')


HOSTILE = [
    ("not base64", "v1.abc!def", InputError, "not base64url text (character 7 is '!')"),
    ("one character too many", "v1.abcde", InputError, "not base64url text"),
    ("no token", "v1.", InputError, "not base64url text"),
    ("not a link", "https://example.com", InputError, "not a share link"),
    ("another version", token_for({}).replace("v1.", "v9.", 1), InputError,
     "another version of the app (v9)"),
    ("not zlib", "v1." + base64.urlsafe_b64encode(b"hello world").decode().rstrip("="),
     InputError, "not zlib-compressed"),
    ("cut short", token_for({"mode": "json", "constraint": "{}", "prompt": "x" * 300})[:-16],
     InputError, "cut short"),
    ("zip bomb", _bomb(), LimitError, "unpacks to over"),
    ("10 MB link", "v1." + "A" * 10_000_000, LimitError,
     "its token has 10,000,003 characters; the limit is 8,000 (raise it with "
     "--max-share-chars)"),
    ("not UTF-8", token_of(b'{"mode": "\xff"}'), InputError, "not UTF-8 text"),
    ("bad JSON", token_of(b'{"mode": '), InputError, "not JSON"),
    ("not an object", token_for([1, 2]), InputError, "not an object"),
    ("extra field", token_for({"mode": "json", "constraint": "{}", "prompt": "", "run": True}),
     InputError, "run: Extra inputs are not permitted"),
    ("extra setting", token_for({"mode": "json", "constraint": "{}", "prompt": "",
                                 "settings": {"temprature": 1}}),
     InputError, "settings.temprature: Extra inputs are not permitted"),
    ("missing field", token_for({"mode": "json", "prompt": ""}), InputError,
     "constraint: Field required"),
    ("wrong mode", token_for({"mode": "yaml", "constraint": "", "prompt": ""}), InputError,
     "mode: Input should be 'choice', 'regex', 'json', 'grammar' or 'tool'"),
    ("surrogate in prompt", token_for({"mode": "json", "constraint": "{}",
                                       "prompt": "ok \ud800"}),
     InputError, "prompt: character 4 is a lone surrogate (U+D800)"),
    ("NUL in constraint", token_for({"mode": "choice", "constraint": "a\x00b", "prompt": ""}),
     InputError, "constraint: character 2 is a NUL"),
    ("over-limit regex", token_for({"mode": "regex", "constraint": "a" * 5000, "prompt": ""}),
     LimitError, "the regex has 5,000 characters; the limit is 4,000"),
    ("over-limit constraint", token_for({"mode": "json", "constraint": " " * 100_001,
                                         "prompt": ""}),
     LimitError, "the json constraint has 100,001 characters; the limit is 100,000"),
    ("over-limit prompt", token_for({"mode": "json", "constraint": "{}",
                                     "prompt": "p" * 50_001}),
     LimitError, "the prompt has 50,001 characters"),
    ("bad setting", token_for({"mode": "json", "constraint": "{}", "prompt": "",
                               "settings": {"seed": "42"}}),
     InputError, "settings.seed: Value error, must be a number"),
    ("too many stops", token_for({"mode": "json", "constraint": "{}", "prompt": "",
                                  "settings": {"stop": ["x"] * 17}}),
     LimitError, "the stop list has 17 strings"),
    ("not text", None, InputError, "give the link's token as text"),
]


@pytest.mark.parametrize(("token", "error", "message"),
                         [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_a_hostile_link_is_one_line_quickly(token, error, message):
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        share.decode(token)
    assert time.perf_counter() - started < 1.0
    text = str(caught.value)
    assert text.startswith("share link: ") and "\n" not in text and len(text) < 300, text
    assert message in text


def test_a_state_past_the_link_limit_is_refused_when_made():
    # 50,000 characters of no pattern compress to far more than 8,000.
    noise = base64.b64encode(random.Random(0).randbytes(40_000)).decode()[:50_000]
    state = share.shared_tab("json", "{}", noise, {})
    with pytest.raises(LimitError, match="the share link has [0-9,]+ characters; the limit is "
                                         "8,000 \\(raise it with --max-share-chars\\)"):
        share.encode(state)


def test_the_link_limit_is_a_flag():
    previous = limits.active()
    try:
        limits.configure(limits.Limits(max_share_chars=20))
        with pytest.raises(LimitError, match="the limit is 20"):
            share.encode(share.shared_tab("choice", "a\nb", "p", {}))
    finally:
        limits.configure(previous)


def test_a_link_with_an_integer_past_pythons_digit_limit_gets_one_line():
    import base64
    import zlib

    from playground.errors import InputError
    from playground.run import share

    data = ('{"mode": "regex", "constraint": "a", "prompt": "p", "settings": {"seed": '
            + "1" * 5000 + "}}").encode()
    token = "v1." + base64.urlsafe_b64encode(zlib.compress(data)).rstrip(b"=").decode()
    with pytest.raises(InputError, match="^share link: its data cannot be read"):
        share.decode(token)
