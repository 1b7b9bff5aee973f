"""Copy as code on the GPU: the classic presets' snippets run on vLLM and what they return
validates.

Run on the GPU machine: with $GPU_MODEL set (a folder with a model's config and tokenizer),
the engine loads it with load_format="dummy" (random weights), so an output may run to max
tokens (truncated) but never break the constraint; without it, the default model with its
real weights must give valid outputs. $GPU_ENGINE_ARGS (JSON) adds `LLM(...)` / `vllm serve`
arguments, e.g. '{"gpu_memory_utilization": 0.4}'. Results go to $OUT when it is set.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import MODEL, free_port

from playground.core.presets import load_presets
from playground.judging.validation import validate
from playground.run.export import Target, snippet

pytestmark = pytest.mark.gpu
PRESETS = load_presets()
CLASSICS = ["Sentiment", "Email address", "Iconic 90s car", "SQL SELECT"]
DUMMY = bool(os.environ.get("GPU_MODEL"))
ENGINE_ARGS = {"max_model_len": 2048, "gpu_memory_utilization": 0.45, "enforce_eager": True,
               **({"load_format": "dummy"} if DUMMY else {}),
               **json.loads(os.environ.get("GPU_ENGINE_ARGS") or "{}")}
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
# Every snippet of one backend in one process: they all ask for the same LLM(...), so a
# stand-in keeps the first one made and hands it out again (one engine start per backend).
RUNNER = """
import json, sys
import vllm

real, made = vllm.LLM, {}

def LLM(*args, **kwargs):
    key = json.dumps([args, kwargs], sort_keys=True)
    if key not in made:
        made[key] = real(*args, **kwargs)
    return made[key]

vllm.LLM = LLM
results = []
for code in json.load(open(sys.argv[1])):
    scope = {}
    exec(code, scope)
    output = scope["outputs"][0].outputs[0]
    results.append({"text": output.text, "finish_reason": output.finish_reason})
json.dump(results, open(sys.argv[2], "w"))
"""


def _target(backend: str, **extra) -> Target:
    # Random weights fill JSON with whitespace unless whitespace is restricted.
    return Target(model=MODEL, backend=backend, disable_any_whitespace=DUMMY,
                  engine_args=ENGINE_ARGS, tag_ids=_tag_ids(), **extra)


def _tag_ids() -> dict[str, int]:
    """The model's tool-call tags as tokens, as the running engine gives copy as code."""
    import transformers

    from playground.backends.guidance import special_tag_ids

    return special_tag_ids(transformers.AutoTokenizer.from_pretrained(MODEL))


@contextmanager
def vllm_serve(target: Target, port: int, tmp_path: Path, *extra: str) -> Iterator[None]:
    """`vllm serve` of MODEL with the target's structured-outputs config, until healthy;
    stopped on exit."""
    flags = [f"--{key.replace('_', '-')}" + ("" if value is True else f"={value}")
             for key, value in ENGINE_ARGS.items() if value is not False]
    # The `vllm` entry point as a module: the GPU machine's bundle puts no script on PATH.
    command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", MODEL,
               "--port", str(port), "--structured-outputs-config",
               json.dumps(target.structured_outputs_config), *extra, *flags]
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            deadline = time.monotonic() + 900
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                    break
                except OSError:
                    assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "vllm serve did not start"
                    time.sleep(2)
            yield
        finally:
            os.killpg(server.pid, 15)
            server.wait(timeout=120)


def _judge(backend: str, kind: str, results: list[dict]) -> None:
    allowed = {"valid", "truncated"} if DUMMY else {"valid"}
    verdicts = {}
    for name, result in zip(CLASSICS, results, strict=True):
        # Judged as the playground judges that engine: a cut output by the backend's own
        # matcher (on the H100 guidance's Unicode \w let random weights write '𫍘认通過…'
        # under the email regex: a viable prefix to guidance, not to xgrammar or RE2).
        verdict = validate(PRESETS[name].to_constraint(), result["text"],
                           result["finish_reason"], backend=backend,
                           any_whitespace=not DUMMY)
        verdicts[name] = verdict.status
        if OUT:
            with open(OUT / "gpu_export.jsonl", "a") as file:
                file.write(json.dumps({"kind": kind, "backend": backend, "preset": name,
                                       **result, "verdict": verdict.status}) + "\n")
        assert verdict.status in allowed, (name, result, verdict.errors)
    assert "valid" in verdicts.values(), verdicts


@pytest.mark.parametrize("backend", ["guidance", "xgrammar"])
def test_python_snippets_run_on_vllm_and_their_output_validates(backend, tmp_path):
    _judge(backend, "python", run_python_snippets(CLASSICS, backend, tmp_path))


def run_python_snippets(names: list[str], backend: str, tmp_path: Path) -> list[dict]:
    """The presets' exported vLLM offline snippets, run in one fresh process (one engine)."""
    codes = [snippet("python", PRESETS[name].to_constraint(), PRESETS[name].prompt,
                     PRESETS[name].settings, _target(backend)) for name in names]
    (tmp_path / "codes.json").write_text(json.dumps(codes))
    subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "codes.json"),
                    str(tmp_path / "results.json")], check=True, timeout=900)
    return json.loads((tmp_path / "results.json").read_text())


def test_openai_snippets_run_against_vllm_serve(tmp_path):
    backend = "guidance"
    port = free_port()
    target = _target(backend, base_url=f"http://127.0.0.1:{port}/v1")
    with vllm_serve(target, port, tmp_path):
        results = []
        for name in CLASSICS:
            preset = PRESETS[name]
            scope: dict = {}
            exec(snippet("openai", preset.to_constraint(), preset.prompt, preset.settings,
                         target), scope)
            choice = scope["response"].choices[0]
            results.append({"text": choice.message.content,
                            "finish_reason": choice.finish_reason})
    _judge(backend, "openai", results)


# ---- the Tool call tab ---------------------------------------------------------------------

TOOL_PRESETS = [name for name, preset in PRESETS.items() if preset.mode == "tool"]


def _as_hermes(message) -> str:
    """The server's parsed calls written back in the tab's call format, to judge them."""
    calls = [f'<tool_call>\n{{"name": {json.dumps(call.function.name)}, "arguments": '
             f"{call.function.arguments}}}\n</tool_call>" for call in message.tool_calls or []]
    # A call the server could not parse (cut at max tokens) stays in the content as the
    # server wrote it: vLLM serve's own `required` format has no newline after <tool_call>
    # (seen on the H200 on 12-04), the tab's has one, which the cut-call check holds to.
    content = re.sub(r"<tool_call>(?!\n)", "<tool_call>\n", message.content or "")
    return content + "\n".join(calls)


@pytest.mark.parametrize("backend", ["guidance", "xgrammar"])
def test_tool_python_snippets_run_on_vllm_with_valid_calls(backend, tmp_path):
    results = run_python_snippets(TOOL_PRESETS, backend, tmp_path)
    for name, result in zip(TOOL_PRESETS, results, strict=True):
        verdict = validate(PRESETS[name].to_constraint(), result["text"],
                           result["finish_reason"], backend=backend)
        assert verdict.status in ({"valid", "truncated"} if DUMMY else {"valid"}), (
            name, result, verdict.errors)


def test_tool_openai_snippets_run_against_vllm_serve_with_the_hermes_parser(tmp_path):
    """The exported OpenAI request (tools + tool_choice) against `vllm serve
    --enable-auto-tool-choice --tool-call-parser hermes`: every call the server parses is
    a defined tool with valid arguments."""
    backend = "xgrammar"
    port = free_port()
    target = _target(backend, base_url=f"http://127.0.0.1:{port}/v1")
    with vllm_serve(target, port, tmp_path, "--enable-auto-tool-choice",
                    "--tool-call-parser", "hermes"):
        for name in TOOL_PRESETS:
            preset = PRESETS[name]
            scope: dict = {}
            exec(snippet("openai", preset.to_constraint(), preset.prompt, preset.settings,
                         target), scope)
            choice = scope["response"].choices[0]
            text = _as_hermes(choice.message)
            if OUT:
                with open(OUT / "gpu_export.jsonl", "a") as file:
                    file.write(json.dumps({"kind": "openai-tools", "preset": name,
                                           "text": text}) + "\n")
            constraint = preset.to_constraint()
            # Random weights fill a call's arguments with whitespace to max tokens: a
            # cut call is truncated, as in every other test here.
            verdict = validate(constraint, text, choice.finish_reason or "stop")
            if constraint.choice != "auto" or choice.message.tool_calls:
                assert verdict.status in ({"valid", "truncated"} if DUMMY else {"valid"}), (
                    name, text, choice.finish_reason, verdict.errors)
