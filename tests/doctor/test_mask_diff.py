"""Where xgrammar's and llguidance's masks differ along one output
(`playground.doctor.mask_diff`), on the byte vocabulary and on SmolLM2's tokenizer.

The known differences come from the conformance table (docs/conformance.md): xgrammar
ignores a keyword whose schema names no `type` (minLength), checks a date's shape but not
its calendar where llguidance checks both (format), and allows no whitespace inside a
`const` array, nor `-0`, where llguidance does. The schema both enforce fully shows none
(with no negative number: there `-0` tells them apart).
"""

from __future__ import annotations

import importlib.util

import pytest

from playground.core.constraints import JsonSchema
from playground.doctor.mask_diff import BYTE_END, mask_diff

BOTH_ENFORCE = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
                "additionalProperties": False}

# (schema, output, the backend that allows more where they part, who refuses the output)
DIFFERENT = [
    ({"minLength": 3}, '"ab"', "xgrammar", "guidance"),
    ({"type": "string", "format": "date"}, '"2020-02-30"', "xgrammar", "guidance"),
    ({"const": [False]}, "[\n  false\n]", "guidance", "xgrammar"),
    # JSON allows -0, and so does llguidance; xgrammar's integers do not (found here: any
    # negative number shows it, at the step after the minus).
    ({"type": "integer"}, "-0", "guidance", "xgrammar"),
]


def _byte_ids(text: str) -> list[int]:
    return [*text.encode("utf-8"), BYTE_END]


@pytest.fixture(scope="module")
def tokenizer():
    """SmolLM2's tokenizer, the CPU model's (from its cached checkpoint folder)."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    import transformers

    from playground.engines.cpu_models import checkpoint_folder

    return transformers.AutoTokenizer.from_pretrained(checkpoint_folder(None))


def _ids(tokenizer, text: str) -> list[int]:
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]


def _check_the_difference(steps, wider: str, refuses: str) -> None:
    assert steps, "no step differs"
    assert any(step.only[wider] > 0 and step.examples[wider] for step in steps)
    last = steps[-1]
    assert last.accepted == {wider: True, refuses: False}
    assert last.allowed[wider] > last.allowed[refuses]


@pytest.mark.parametrize(("schema", "text", "wider", "refuses"), DIFFERENT)
def test_a_known_difference_is_found_on_bytes(schema, text, wider, refuses):
    _check_the_difference(mask_diff(JsonSchema(schema), None, _byte_ids(text)), wider, refuses)


@pytest.mark.parametrize(("schema", "text", "wider", "refuses"), DIFFERENT)
def test_a_known_difference_is_found_on_the_models_tokens(tokenizer, schema, text, wider,
                                                          refuses):
    steps = mask_diff(JsonSchema(schema), tokenizer, _ids(tokenizer, text))
    _check_the_difference(steps, wider, refuses)
    assert steps[-1].prefix == tokenizer.decode(_ids(tokenizer, text)[:steps[-1].step])


@pytest.mark.parametrize("text", ['{"a": 12}', '{"a":7}', '{ "a" : 0 }'])
def test_none_where_both_enforce_the_schema_fully(tokenizer, text):
    assert mask_diff(JsonSchema(BOTH_ENFORCE), tokenizer, _ids(tokenizer, text)) == []


def test_none_on_bytes_either():
    assert mask_diff(JsonSchema(BOTH_ENFORCE), None, _byte_ids('{"a": 12}')) == []


def test_a_step_reads_as_json():
    steps = mask_diff(JsonSchema({"minLength": 3}), None, _byte_ids('"ab"'))
    found = steps[-1].as_dict()
    assert found["token"] == '"' and found["prefix"] == '"ab'
    assert set(found["allowed"]) == {"xgrammar", "guidance"}
