"""guidance, the backend chosen for Qwen2.5 (backends/choice.py), against xgrammar on the
default GPU model's own tokenizer: along random paths through every preset, what one
backend allows the other accepts, and the validator calls it valid.

Random paths are what a model with dummy weights writes (the GPU bench's), and they reach
far more of each mask than one preset's example output. Each backend receives what vLLM
would send it (`as_sent_to_guidance`: ASCII classes; `disable_additional_properties`).
Without the ASCII classes, 4 of the 5 regex presets failed here: llguidance's `\\d` let a
random walk write "202６-11-1２", which the validator, xgrammar and ECMA-262 refuse.
"""

from __future__ import annotations

import pytest

from playground.backends.guidance import as_sent_to_guidance, closed_objects
from playground.core.constraints import JsonSchema
from playground.core.presets import load_presets
from playground.judging.matcher import Matcher
from playground.judging.validation import validate
from tests.support import qwen_tokenizer

PRESETS = load_presets()
WALKS = 8  # per backend and preset (40 passed too: 2,560 paths, 49 s on 2 cores)
MAX_TOKENS = 48


def sent(constraint, backend: str):
    """As the engine sends it: for guidance, chosen per model, with vLLM's
    `disable_additional_properties` (backends/choice.py)."""
    if backend == "xgrammar":
        return constraint
    found = as_sent_to_guidance(constraint)
    return JsonSchema(closed_objects(found.schema)) if isinstance(found, JsonSchema) else found


def xgrammar_is_narrower(text: str, found) -> bool:
    """xgrammar refuses a backslash escape inside a string with a length bound
    (minLength/maxLength); llguidance takes it, and it is valid JSON."""
    return found.rejected_at is not None and text[found.rejected_at] == "\\"


@pytest.mark.parametrize("any_whitespace", [True, False], ids=["whitespace", "compact"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_the_backends_agree_along_random_paths(name, any_whitespace):
    tokenizer = qwen_tokenizer()
    skip = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    constraint = PRESETS[name].to_constraint()
    matchers = {backend: Matcher.create(sent(constraint, backend), tokenizer, backend,
                                        any_whitespace) for backend in ("xgrammar", "guidance")}
    for walker, other in (("guidance", "xgrammar"), ("xgrammar", "guidance")):
        for seed in range(WALKS):
            ids, ended = matchers[walker].walk(seed, MAX_TOKENS, skip)
            text = tokenizer.decode(ids)
            verdict = validate(constraint, text, "stop" if ended else "length", None,
                               walker, any_whitespace)
            assert verdict.status in (("valid",) if ended else ("valid", "truncated")), (
                walker, seed, text, verdict)
            if not any_whitespace and constraint.mode == "json":
                continue  # compact JSON: xgrammar writes ", " and ": ", llguidance "," and ":"
            found = matchers[other].test(text)
            agrees = found.matches if ended else found.accepted
            assert agrees or (other == "xgrammar" and xgrammar_is_narrower(text, found)), (
                walker, seed, text, found)
