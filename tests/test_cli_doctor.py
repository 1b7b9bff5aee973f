"""The doctor on the command line: check --coverage / --test-string, suite."""

import json
import subprocess
import sys
import time

import pytest
from support import ROOT

from playground.cli import main

BENCH = ROOT / "tests" / "data" / "jsonschemabench"
UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_check_coverage(tmp_path, capsys):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(UNIQUE))
    code, result = run_cli(capsys, "check", "--mode", "json", "--schema", str(schema),
                           "--coverage", "--coverage-backend", "xgrammar",
                           "--coverage-backend", "guidance")
    assert code == 0
    row = next(r for r in result["coverage"] if r["keyword"] == "uniqueItems")
    assert row["path"] == "$.properties.tags"
    assert row["backends"] == {"xgrammar": "not enforced", "guidance": "rejected"}
    assert "uniqueItems" in row["messages"]["guidance"]


def test_check_tool_coverage_covers_each_allowed_tools_parameters(tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tool_choice": "auto", "tools": [
        {"name": "tag", "description": "", "parameters": UNIQUE},
        {"name": "age", "description": "", "parameters": {
            "type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}}]}))
    code, result = run_cli(capsys, "check", "--mode", "tool", "--tools", str(tools),
                           "--coverage", "--coverage-backend", "xgrammar",
                           "--coverage-backend", "guidance")
    assert code == 0
    found = {(r["path"], r["keyword"]): r["backends"] for r in result["coverage"]}
    assert found["tag: $.properties.tags", "uniqueItems"] == {"xgrammar": "not enforced",
                                                              "guidance": "rejected"}
    assert found["age: $.properties.age", "minimum"] == {"xgrammar": "enforced",
                                                         "guidance": "enforced"}
    assert {path.split(":")[0] for path, _ in found} == {"tag", "age"}


def test_check_tool_without_tools_says_which_flag(capsys):
    assert main(["check", "--mode", "tool"]) == 2
    assert "give --tools" in capsys.readouterr().err


def test_check_test_strings(capsys):
    code, result = run_cli(capsys, "check", "--mode", "regex", "--regex", r"\d+",
                           "--test-string", "42", "--test-string", "٣",
                           "--test-string-not", "x")
    assert code == 0
    found = [(r["text"], r["expect"], r["validator"]["matches"], r["disagree"])
             for r in result["test_strings"]]
    assert found == [("42", True, True, False), ("٣", True, False, True), ("x", False, False,
                                                                             False)]


def test_check_regex_coverage_gives_dialect_notes(capsys):
    code, result = run_cli(capsys, "check", "--mode", "regex", "--regex", r"[a-z]+\w",
                           "--coverage")
    assert code == 0 and "coverage" not in result
    assert any("position 6" in line and "guidance matches" in line for line in result["dialect"])


def test_check_without_coverage_stays_under_a_second(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(UNIQUE))
    command = [sys.executable, "-m", "playground", "check", "--mode", "json", "--schema",
               str(schema)]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    assert time.perf_counter() - start < 1.5  # ~0.85 s measured on the shared 2-core machine


@pytest.mark.parametrize("limit", [2])
def test_suite_on_a_tiny_sample(tmp_path, capsys, limit):
    jsonl = tmp_path / "suite.jsonl"
    code, summary = run_cli(capsys, "suite", str(BENCH), "--limit", str(limit), "--no-vllm",
                            "--backend", "xgrammar", "--backend", "guidance",
                            "--jsonl", str(jsonl))
    assert code == 0 and summary["schemas"] == limit
    for backend in ("xgrammar", "guidance"):
        entry = summary["backends"][backend]
        assert entry["compiles"] + entry["rejected"] == limit
        assert entry["compile_p50_s"] is not None
    assert len(jsonl.read_text().splitlines()) == limit


@pytest.mark.slow
def test_suite_on_the_ci_sample(capsys):
    """CI's sample: 20 files spread over the subsets, every installed compiler, no model."""
    code, summary = run_cli(capsys, "suite", str(BENCH), "--limit", "20", "--no-vllm")
    assert code == 0 and summary["schemas"] == 20
    assert set(summary["backends"]) == {"xgrammar", "guidance", "outlines"}


def test_suite_on_a_missing_folder_is_an_input_error(tmp_path, capsys):
    assert main(["suite", str(tmp_path)]) == 2
    assert "no .json files" in capsys.readouterr().err


def test_suite_generation_counts_verdicts(fake_engine):
    from playground.bench.suite import generate, load

    files = load(BENCH, 2)
    fake_engine.enqueue("not json", json.dumps(files[1][1]["tests"][0]["data"])
                        if files[1][1]["tests"][0]["valid"] else "{}")
    results = [{"file": name} for name, _ in files]
    found = generate(fake_engine, files, 32, results)
    assert sum(found["verdicts"].values()) == 2 and found["verdicts"].get("invalid", 0) >= 1
    assert all("generation" in result for result in results)
