"""The CPU token matcher: text checks with a byte vocabulary, replays with a real one."""

import pytest

from playground.backends.names import MATCHER_BACKENDS as BACKENDS
from playground.core.constraints import from_text
from playground.errors import ConstraintError
from playground.judging.matcher import Matcher, describe_bytes
from tests.support import misread_tokenizer

SQL = 'start: "SELECT " NAME ("," NAME)* " FROM " NAME\nNAME: /[a-z_]+/'
EMAIL = r"\w+@\w+\.(com|org|net)\n"
SCHEMA = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'

# (mode, constraint, text, matches, viable prefix, first rejected character)
CASES = [
    ("choice", "yes\nno", "yes", True, True, None),
    ("choice", "yes\nno", "y", False, True, None),
    ("choice", "yes\nno", "maybe", False, False, 0),
    ("regex", EMAIL, "alan@turing.org\n", True, True, None),
    ("regex", EMAIL, "alan@turing.o", False, True, None),
    ("regex", EMAIL, "Alan Turing was a British mathematician", False, False, 4),
    ("json", SCHEMA, '{"a": 1}', True, True, None),
    ("json", SCHEMA, '{"a": 1', False, True, None),
    ("json", SCHEMA, '{"b": 1}', False, False, 2),
    ("json", SCHEMA, '{"a": "x"}', False, False, 6),
    ("grammar", SQL, "SELECT a,b FROM t", True, True, None),
    ("grammar", SQL, "SELECT", False, True, None),
    ("grammar", SQL, "SELECTT", False, False, 6),
    ("grammar", "?start: sum\n?sum: NUMBER | sum \"+\" NUMBER\n%import common.NUMBER",
     "1+2+", False, True, None),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("mode", "constraint", "text", "matches", "viable", "rejected_at"),
                         CASES)
def test_string(backend, mode, constraint, text, matches, viable, rejected_at):
    matcher = Matcher.create(from_text(mode, constraint), backend=backend)
    found = matcher.test(text)
    assert (found.matches, found.accepted, found.rejected_at) == (matches, viable, rejected_at)
    assert matcher.viable_prefix(text) is viable and matcher.accepts(text) is matches
    if not viable:
        assert found.expected and text[rejected_at] in found.message


def test_expected_names_what_was_allowed():
    found = Matcher.create(from_text("grammar", SQL)).test("SELECTT")
    assert found.expected == "' '"
    assert describe_bytes([48, 49, 50, 51, 95, 256]) == "'0'-'3', '_', end of output"


def test_non_ascii_text_is_fed_as_utf8():
    matcher = Matcher.create(from_text("regex", "[a-zé]+"), backend="guidance")
    assert matcher.accepts("café")
    assert matcher.test("cafè").rejected_at == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_replay_counts_allowed_tokens(backend):
    matcher = Matcher.create(from_text("choice", "yes\nno"), backend=backend)
    steps = matcher.replay(list(b"yes") + [256])
    assert [s.allowed for s in steps[:3]] == [2, 1, 1]  # 'y' or 'n', then a forced tail
    assert all(s.accepted for s in steps)
    assert steps[0].vocab > 128  # "free": what any text allows (every ASCII byte, more)


@pytest.mark.parametrize("backend", BACKENDS)
def test_replay_marks_the_first_rejected_token(backend):
    steps = Matcher.create(from_text("regex", "[0-9]+"), backend=backend).replay(list(b"12a3"))
    assert [s.accepted for s in steps] == [True, True, False, False]
    assert steps[3].allowed is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refused_constraint_is_a_constraint_error(backend):
    with pytest.raises(ConstraintError, match=backend if backend == "xgrammar" else "guidance"):
        Matcher.create(from_text("regex", r"(a)\1"), backend=backend)


@pytest.mark.slow
def test_replay_with_the_models_tokenizer(embedded_engine):
    tokenizer = embedded_engine.tokenizer
    matcher = Matcher.create(from_text("json", SCHEMA), tokenizer)
    ids = tokenizer('{"a": 12}', add_special_tokens=False)["input_ids"]
    steps = matcher.replay(ids + [tokenizer.eos_token_id])
    assert all(s.accepted for s in steps), steps
    assert steps[0].allowed < steps[0].vocab  # only "{" and whitespace may open it
    assert matcher.test('{"a": 12}').matches


def test_guidance_misreads_a_tokenizer_whose_decoder_is_not_byte_level(embedded_engine):
    """The H100 finding: a GGUF-converted tokenizer.json with a Sequence decoder makes
    llguidance read byte-level tokens literally; the check must name such a token."""
    from playground.backends.guidance import guidance_misreads

    tokenizer = embedded_engine.tokenizer
    assert guidance_misreads(tokenizer) is None
    broken = misread_tokenizer(tokenizer)
    assert "llguidance reads token" in (guidance_misreads(broken) or "")
