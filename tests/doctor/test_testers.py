"""What the doctor remembers within a process: compiled testers and refusals."""

import pytest

from playground.doctor import testers
from playground.errors import ConstraintError

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
          "required": ["n"]}


def test_a_backend_and_its_vllm_column_share_one_tester():
    tester = testers.compile_tester("xgrammar", SCHEMA)
    assert testers.compile_tester("vllm:xgrammar", dict(SCHEMA)) is tester
    assert testers.compile_tester("guidance", SCHEMA) is not tester
    first = tester.test('{"n":3}')
    assert first.matches and tester.test('{"n":3}') is first  # each text answered once
    assert not tester.test('{"n":2}').matches


def count_calls(monkeypatch, name: str) -> list[str]:
    """The backends `testers.<name>(backend, schema)` is called with, from now on."""
    calls: list[str] = []
    real = getattr(testers, name)

    def counted(backend, schema):
        calls.append(backend)
        return real(backend, schema)

    monkeypatch.setattr(testers, name, counted)
    return calls


def test_a_refused_schema_raises_every_time(monkeypatch):
    calls = count_calls(monkeypatch, "_compile_tester")
    refused = {"type": "string", "format": "no-such-format-for-guidance"}
    for _ in range(2):
        with pytest.raises(ConstraintError, match="llguidance"):
            testers.compile_tester("guidance", refused)
    assert calls == ["guidance"]


def test_refusals_are_remembered(monkeypatch):
    calls = count_calls(monkeypatch, "_refusal")
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 7}
    assert testers.refusal("guidance", schema) is None
    assert testers.refusal("guidance", schema) is None
    assert testers.refusal("outlines", schema) is None
    assert calls == ["guidance", "outlines"]


def test_the_memory_is_bounded():
    for index in range(testers._KEEP_TESTERS + 5):
        testers.compile_tester("outlines", {"type": "integer", "minimum": index})
    assert len(testers._TESTERS) <= testers._KEEP_TESTERS
    for index in range(testers._KEEP_REFUSALS + 5):
        testers.refusal("outlines", {"type": "integer", "maximum": index})
    assert len(testers._REFUSALS) <= testers._KEEP_REFUSALS


def test_the_schema_asked_about_all_along_stays_while_near_copies_come_and_go():
    """Least recently used goes first: bisecting a refused schema compiles many near
    copies, which must not push out the schema's own tester."""
    own = testers.compile_tester("outlines", SCHEMA)
    for index in range(testers._KEEP_TESTERS * 2):
        testers.compile_tester("outlines", {**SCHEMA, "minProperties": index})
        assert testers.compile_tester("outlines", SCHEMA) is own


def test_answers_per_tester_are_bounded(monkeypatch):
    monkeypatch.setattr(testers, "_KEEP_ANSWERS", 3)
    tester = testers.compile_tester("outlines", {"type": "integer", "maximum": -7})
    for index in range(10):
        tester.test(str(index))
    assert len(tester.answers) <= 3


def test_any_tokenizer_is_loaded_once():
    pytest.importorskip("vllm")
    from playground.backends.vllm import _any_tokenizer

    assert _any_tokenizer() is _any_tokenizer()
