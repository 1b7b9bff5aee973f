import json
import subprocess
import sys

import pytest

CHECK_IMPORTS = """
import sys
from playground.cli import main
code = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers", "vllm", "gradio", "xgrammar") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import json\n" + CHECK_IMPORTS, *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("args", "verdict"),
    [
        (["--mode", "choice", "--choice", "yes", "--choice", "no", "--output", "yes"], "valid"),
        (["--mode", "regex", "--regex", r"\d+", "--output", "12a"], "invalid"),
        (["--mode", "json", "--schema", "presets/03-car.schema.json"], None),
    ],
)
def test_check_prints_json_and_imports_no_model_code(args, verdict):
    done = run_cli("check", *args)
    result = json.loads(done.stdout)
    assert result["constraint_ok"] is True and result["verdict"] == verdict
    status = json.loads(done.stderr.strip().splitlines()[-1])
    assert status == {"code": 0, "heavy": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "regex", "--regex", "a("], "regex: missing ), unterminated subpattern"),
        (["--mode", "json", "--schema", "/nonexistent.json"], "cannot read /nonexistent.json"),
        (["--mode", "grammar", "--grammar", "README.md"], "grammar:"),
        (["--mode", "choice"], "give --choice"),
    ],
)
def test_unusable_constraint_exits_2_with_one_line(args, message):
    done = run_cli("check", *args)
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: ") and message in first
    assert "Traceback" not in done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["code"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["suite", "tests/data/jsonschemabench", "--backend", "bogus"], "invalid choice"),
        (["suite", "tests/data/jsonschemabench", "--limit", "0"], "must be 1 or more"),
        (["suite", "tests/data/jsonschemabench", "--limit", "-1"], "must be 1 or more"),
        (["check", "--mode", "regex", "--regex", "a", "--coverage-backend", "x"],
         "invalid choice"),
        (["run", "--preset", "Sentiment", "--engine", "openai"], "needs --base-url"),
        (["suite", "tests/data/jsonschemabench", "--limit", "1", "--engine", "openai"],
         "needs --base-url"),  # at once, not after the suite
        (["run", "--preset", "Sentiment", "--engine", "cpu", "--cpu-batch", "0"],
         "--cpu-batch must be between 1 and 16, not 0"),
        (["run", "--preset", "Sentiment", "--engine", "cpu", "--cpu-batch", "99"],
         "--cpu-batch must be between 1 and 16, not 99"),
    ],
)
def test_flag_mistakes_exit_2_in_one_line(args, message):
    done = subprocess.run([sys.executable, "-m", "playground", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_presets_command_lists_every_preset():
    done = subprocess.run([sys.executable, "-m", "playground", "presets"], capture_output=True,
                          text=True, timeout=60)
    names = [p["name"] for p in json.loads(done.stdout)]
    assert {"Sentiment", "Email address", "Iconic 90s car", "SQL SELECT"} <= set(names)


@pytest.mark.parametrize("backend", ["xgrammar", "guidance"])
@pytest.mark.parametrize(("output", "verdict"), [
    ("alan@turing.or", "truncated"),  # still on the way to a match
    ("alan@turing.org\n", "truncated"),  # cut at max tokens is never "valid"
    ("Alan Turing was a British mathematician", "invalid"),  # left the language at char 4
])
def test_check_cut_judges_as_if_stopped_at_max_tokens(backend, output, verdict):
    done = run_cli("check", "--mode", "regex", "--regex", r"\w+@\w+\.(com|org|net)\n",
                   "--output", output, "--cut", "--backend", backend)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == verdict
