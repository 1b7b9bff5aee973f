"""Copy as code: every preset's snippets compile, and what they would send passes vLLM's
own request validation on the CPU (vllm imported, no GPU, no model)."""

import ast
import importlib.util
import json
import types

import pytest

from playground.core.presets import load_presets
from playground.core.settings import SamplingSettings
from playground.run.export import FORMS, Target, curl_body, py, request_body, snippet, target_for

PRESETS = load_presets()
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm is not installed")
# The chat template off, a system prompt and stop strings: the other branches.
PLAIN = SamplingSettings(chat_template=False, stop=["\n", "END"], seed=None, max_tokens=20)
SYSTEM = SamplingSettings(system_prompt="You answer tersely.", temperature=0.7, top_p=0.9)
CASES = [(name, preset.settings) for name, preset in PRESETS.items()] + [
    ("Iconic 90s car", PLAIN), ("SQL SELECT", PLAIN), ("Sentiment", SYSTEM)]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]
BACKENDS = ["guidance", "xgrammar"]


def _snippet(form, name, settings, target=None):
    preset = PRESETS[name]
    return snippet(form, preset.to_constraint(), preset.prompt, settings, target)


@pytest.mark.parametrize(("name", "settings"), CASES, ids=IDS)
@pytest.mark.parametrize("form", ["python", "openai"])
def test_python_snippets_compile(form, name, settings):
    compile(_snippet(form, name, settings), f"<{form}>", "exec")


@pytest.mark.parametrize(("name", "settings"), CASES, ids=IDS)
def test_curl_body_is_the_request_body(name, settings):
    preset = PRESETS[name]
    text = _snippet("curl", name, settings)
    body = curl_body(text)
    assert body == request_body(preset.to_constraint(), preset.prompt, settings, Target())
    assert ("messages" in body) == settings.chat_template
    assert body["include_stop_str_in_output"] is True
    assert ("response_format" in body) == (preset.mode == "json")
    endpoint = "chat/completions" if settings.chat_template else "completions"
    assert f"http://localhost:8000/v1/{endpoint} " in text


def test_grammar_goes_as_the_engine_receives_it():
    constraint = PRESETS["SQL SELECT"].to_constraint()
    for backend, marker in [("xgrammar", "::="), ("guidance", "start:")]:
        body = request_body(constraint, "p", SamplingSettings(), Target(backend=backend))
        assert marker in body["structured_outputs"]["grammar"]
        assert "?start" not in body["structured_outputs"]["grammar"]


def test_no_whitespace_under_auto_picks_xgrammar_as_the_engine_does():
    target = Target(backend="auto", disable_any_whitespace=True)
    assert target.structured_outputs_config == {"backend": "xgrammar",
                                                "disable_any_whitespace": True}


@pytest.mark.parametrize(
    ("info", "expected"),
    [({"model": "SmolLM2-135M-Instruct", "options": {"cpu_dtype": "int8"}},
      Target(model="HuggingFaceTB/SmolLM2-135M-Instruct")),
     ({"model": "m/x", "options": {"backend": "xgrammar", "disable_any_whitespace": True}},
      Target(model="m/x", backend="xgrammar", disable_any_whitespace=True)),
     ({"model": "(the server's first model)", "options": {
         "base_url": "http://h:9/", "structured_outputs_backend": "xgrammar (read from it)"}},
      Target(backend="xgrammar", base_url="http://h:9/v1"))],
)
def test_target_for_an_engine(info, expected):
    assert target_for(info) == expected


@pytest.mark.parametrize("value", [
    'a"""b', "ends with \\", 'line\nends with "', "tab\tand\nlines", "ünï\ncode ✓",
    "\\d+\n\\w", "\r\n", "", {"a": [1, 2.5, None, True, {"b": "c\n"}]}, ["x", []], {},
    "lone \ud800 surrogate",
])
def test_py_literal_round_trips(value):
    assert ast.literal_eval(py(value)) == value


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_constraint_round_trips_as_python(name):
    from playground.run.export import structured

    value = structured(PRESETS[name].to_constraint(), Target())
    assert ast.literal_eval(py(value)) == value


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="python, openai, curl"):
        _snippet("java", "Sentiment", SamplingSettings())


# ---- vLLM's own validation -------------------------------------------------------------


def _validate(params, config):
    from types import SimpleNamespace

    from vllm.config import StructuredOutputsConfig

    params._validate_structured_outputs(SimpleNamespace(is_diffusion=False),
                                        StructuredOutputsConfig(**config), SimpleNamespace())


class _LLM:
    """Stands in for vllm.LLM: records what the snippet builds, runs nothing."""

    made: list = []

    def __init__(self, model, **kwargs):
        self.model, self.kwargs = model, kwargs
        _LLM.made.append(self)

    def _record(self, prompt, params, tools=None):
        self.prompt, self.params, self.tools = prompt, params, tools
        output = types.SimpleNamespace(text="out")
        return [types.SimpleNamespace(outputs=[output])]

    chat = generate = _record


@needs_vllm
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "settings"), CASES, ids=IDS)
def test_python_snippet_params_pass_vllm_validation(monkeypatch, capsys, name, settings,
                                                    backend):
    import vllm

    monkeypatch.setattr(vllm, "LLM", _LLM)
    _LLM.made = []
    exec(_snippet("python", name, settings, Target(backend=backend)), {})
    (llm,) = _LLM.made
    assert llm.kwargs["structured_outputs_config"]["backend"] == backend
    assert isinstance(llm.params, vllm.SamplingParams)
    assert llm.params.include_stop_str_in_output is True
    assert llm.params.max_tokens == settings.max_tokens
    _validate(llm.params, llm.kwargs["structured_outputs_config"])
    if settings.chat_template:
        assert llm.prompt[-1] == {"role": "user", "content": PRESETS[name].prompt}
    else:
        assert llm.prompt == PRESETS[name].prompt
    assert capsys.readouterr().out.endswith("out\n")  # vLLM logs to stdout on import


@needs_vllm
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "settings"), CASES, ids=IDS)
def test_request_body_passes_the_servers_validation(name, settings, backend):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    preset = PRESETS[name]
    target = Target(backend=backend)
    body = request_body(preset.to_constraint(), preset.prompt, settings, target)
    request = (ChatCompletionRequest if settings.chat_template else CompletionRequest
               ).model_validate(body)
    params = request.to_sampling_params(settings.max_tokens, {})
    assert params.include_stop_str_in_output is True
    assert params.stop == settings.stop
    _validate(params, target.structured_outputs_config)


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="no openai client")
@pytest.mark.parametrize(("name", "settings"), CASES, ids=IDS)
def test_openai_snippet_sends_the_request_body(monkeypatch, capsys, name, settings):
    """The openai client, run for real against a stub transport, sends exactly the body
    the curl snippet shows."""
    import httpx
    import openai

    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, json.loads(request.content)))
        choice = ({"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "out"}}
                  if settings.chat_template else
                  {"index": 0, "finish_reason": "stop", "text": "out"})
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [choice]})

    real = openai.OpenAI
    monkeypatch.setattr(openai, "OpenAI", lambda **kwargs: real(
        **kwargs, http_client=httpx.Client(transport=httpx.MockTransport(answer))))
    exec(_snippet("openai", name, settings), {})
    preset = PRESETS[name]
    ((path, body),) = sent
    assert body == request_body(preset.to_constraint(), preset.prompt, settings, Target())
    assert path.endswith("/chat/completions" if settings.chat_template else "/completions")
    # The Tool call tab prints the calls vLLM's tool parser found (none here), then the text.
    tools = preset.mode == "tool" and settings.chat_template
    assert capsys.readouterr().out == ("None out\n" if tools else "out\n")


@pytest.mark.parametrize("form", FORMS)
def test_cli_export_prints_the_snippet_without_a_model(capsys, form):
    from playground.cli import main

    assert main(["run", "--preset", "Iconic 90s car", "--export", form]) == 0
    out = capsys.readouterr().out
    preset = PRESETS["Iconic 90s car"]
    assert out == _snippet(form, "Iconic 90s car", preset.settings)


UNIQUE = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                     "uniqueItems": True}}}


def test_lenient_export_carries_the_lenient_schema(tmp_path, capsys):
    """What a lenient run sends, not the full schema vLLM refuses (uniqueItems)."""
    from playground.cli import main
    from playground.web import session_panel as ui_session

    path = tmp_path / "s.json"
    path.write_text(json.dumps(UNIQUE))
    assert main(["run", "--mode", "json", "--schema", str(path), "--prompt", "p",
                 "--lenient", "--export", "curl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Lenient") and "uniqueItems at $.properties.tags" in out
    assert "uniqueItems" not in out.split("\n", 1)[1]  # only the comment names it
    page = ui_session.export_text(Target(), "json", "python", json.dumps(UNIQUE), "p", {},
                                  lenient=True)
    assert page.startswith("# Lenient") and page.count("uniqueItems") == 1
    full = ui_session.export_text(Target(), "json", "python", json.dumps(UNIQUE), "p", {})
    assert '"uniqueItems": True' in full
