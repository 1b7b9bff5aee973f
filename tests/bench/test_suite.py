"""The suite's schemas at once (`--jobs`) and its constrained requests at once."""

import asyncio
import json
import re
import time

import pytest
from support import ROOT

from playground.bench import suite
from playground.cli import main
from playground.judging import workers

BENCH = ROOT / "tests" / "data" / "jsonschemabench"


def _lines(path):
    """The JSONL's results without their timings (the only part that may differ, with the
    time of day xgrammar puts in some of its messages)."""
    out = []
    for line in path.read_text().splitlines():
        result = json.loads(re.sub(r"\[\d\d:\d\d:\d\d\] ", "", line))
        for entry in result["backends"].values():
            entry.pop("compile_s")
        out.append(result)
    return out


def test_jobs_give_the_same_results_in_file_order(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(workers, "MAX_WORKERS", workers.MAX_WORKERS)  # restored after
    summaries = {}
    for jobs in (1, 3):
        jsonl = tmp_path / f"jobs{jobs}.jsonl"
        code = main(["suite", str(BENCH), "--limit", "5", "--no-vllm", "--jobs", str(jobs),
                     "--backend", "xgrammar", "--backend", "guidance",
                     "--backend", "outlines", "--time-limit-s", "60", "--jsonl", str(jsonl)])
        captured = capsys.readouterr()
        assert code == 0
        summaries[jobs] = json.loads(captured.out)
        progress = [line for line in captured.err.splitlines() if line.startswith("[")
                    and "/5] " in line]
        assert sorted(int(line[1:line.index("/")]) for line in progress) == [1, 2, 3, 4, 5]
    files = [name for name, _ in suite.load(BENCH, 5)]
    one, three = _lines(tmp_path / "jobs1.jsonl"), _lines(tmp_path / "jobs3.jsonl")
    assert [r["file"] for r in one] == [r["file"] for r in three] == files
    assert one == three
    for summary in summaries.values():
        for entry in summary["backends"].values():
            entry.pop("compile_p50_s"), entry.pop("compile_p99_s")
    assert summaries[1] == summaries[3]


def test_results_keep_file_order_whatever_finishes_first(monkeypatch, capsys):
    files = [(f"s{i}.json", {"schema": {}}) for i in range(6)]
    delays = {name: 0.1 * (6 - i) for i, (name, _) in enumerate(files)}  # last ends first

    sizes = []

    def fake(name, data, backends, time_limit_s):
        sizes.append(workers.MAX_WORKERS)
        time.sleep(delays[name])
        return {"file": name, "backends": {}}

    monkeypatch.setattr(suite, "bounded_schema", fake)
    monkeypatch.setattr(workers, "MAX_WORKERS", 2)
    emitted = []
    results = suite.run_all(files, [], 1.0, jobs=6, emit=emitted.append)
    assert [r["file"] for r in results] == [r["file"] for r in emitted] == \
        [name for name, _ in files]
    progress = capsys.readouterr().err.splitlines()
    assert progress[0] == "[1/6] s5.json"  # as each finished, counted
    assert sorted(progress) == sorted(f"[{i}/6] s{6 - i}.json" for i in range(1, 7))
    assert min(sizes) >= 6  # the pool grew to the jobs...
    assert workers.MAX_WORKERS == 2  # ...for this run only


def test_a_failing_schema_stops_the_run_at_once(monkeypatch):
    """Not after every schema still running reaches its limit."""
    def fake(name, data, backends, time_limit_s):
        if name == "bad.json":
            time.sleep(0.1)
            raise RuntimeError("vLLM's API moved")
        time.sleep(3)
        return {"file": name, "backends": {}}

    monkeypatch.setattr(suite, "bounded_schema", fake)
    monkeypatch.setattr(workers, "MAX_WORKERS", workers.MAX_WORKERS)
    files = [("a.json", {}), ("bad.json", {}), ("b.json", {})]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="moved"):
        suite.run_all(files, [], 1.0, jobs=3)
    assert time.monotonic() - start < 2


def test_a_schema_past_its_limit_costs_only_itself(monkeypatch):
    def fake(name, data, backends, time_limit_s):
        if name == "slow.json":
            return {"file": name, "timeout": "still running after 1 s",
                    "backends": {"xgrammar": {"compiles": None, "compile_s": None}}}
        return {"file": name, "backends": {"xgrammar": {"compiles": True, "compile_s": 0.1}}}

    monkeypatch.setattr(suite, "bounded_schema", fake)
    monkeypatch.setattr(workers, "MAX_WORKERS", workers.MAX_WORKERS)
    files = [("a.json", {}), ("slow.json", {}), ("b.json", {})]
    summary = suite.summarize(suite.run_all(files, ["xgrammar"], 1.0, jobs=3), ["xgrammar"])
    assert summary["backends"]["xgrammar"]["compiles"] == 2
    assert summary["backends"]["xgrammar"]["timeouts"] == 1


def test_default_jobs():
    assert 1 <= suite.default_jobs() <= suite.MAX_JOBS


@pytest.mark.parametrize("concurrent", [True, False])
def test_generation_runs_requests_at_once_only_where_the_engine_batches(concurrent):
    from playground.engines.fake import FakeEngine

    engine = FakeEngine(delay_s=0.01, concurrent=concurrent)
    engine.load()
    most = 0
    stream = engine.stream

    async def counted(*args, **kwargs):
        nonlocal most
        async for chunk in stream(*args, **kwargs):
            most = max(most, engine.active)
            yield chunk

    engine.stream = counted
    files = [(f"s{i}.json", {"schema": {"type": "integer", "minimum": i}}) for i in range(5)]
    engine.enqueue(*(f"{i} " * 3 for i in range(5)))  # "0 0 0 ": invalid, in three words
    results = [{"file": name} for name, _ in files]
    found = suite.generate(engine, files, 16, results)
    assert sum(found["verdicts"].values()) == 5
    assert (most > 1) is concurrent
    # Requests were sent in file order, each result beside its own schema.
    assert [json.loads(prompt.split("\n", 1)[1])["minimum"]
            for prompt, _, _ in engine.requests] == list(range(5))
    assert all(r["generation"]["text"].startswith(str(i)) for i, r in enumerate(results))


def test_generation_with_one_event_loop(fake_engine):
    """The requests share one event loop (vLLM's engine is bound to it)."""
    loops = set()
    stream = fake_engine.stream

    async def recorded(*args, **kwargs):
        loops.add(asyncio.get_running_loop())
        async for chunk in stream(*args, **kwargs):
            yield chunk

    fake_engine.stream = recorded
    files = suite.load(BENCH, 3)
    suite.generate(fake_engine, files, 8, [{"file": name} for name, _ in files])
    assert len(loops) == 1
