import pytest

from playground.core.constraints import from_text
from playground.judging.validation import validate

SQL = """?start: select_statement
?select_statement: "SELECT " column_list " FROM " table_name
?column_list: column_name ("," column_name)*
?table_name: identifier
?column_name: identifier
?identifier: /[a-zA-Z_][a-zA-Z0-9_]*/
"""
CAR = """{"type": "object", "properties": {"brand": {"type": "string"},
 "car_type": {"enum": ["sedan", "SUV", "Truck", "Coupe"]}}, "required": ["brand"]}"""
# Pointers as the validator reads them: percent-decoded, then ~1 and ~0 unescaped.
PERCENT = """{"$defs": {"a b": {"type": "string"}, "m~n": {"type": "integer"}},
 "properties": {"a/b": {"$ref": "#/$defs/a%20b"}, "m~n": {"$ref": "#/$defs/m~0n"}}}"""
LINKED = """{"$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#"}}}},
 "$ref": "#/$defs/node"}"""


@pytest.mark.parametrize(
    ("mode", "constraint", "text", "status", "error"),
    [
        ("choice", "Positive\nNegative", "Positive", "valid", None),
        ("choice", "Positive\nNegative", "positive", "invalid", "not one of the 2 choices"),
        ("choice", "Positive\nNegative", "Positive ", "invalid", "not one of"),
        ("regex", r"\w+@\w+\.(com|org|net)\n", "alan@enigma.com\n", "valid", None),
        ("regex", r"\w+@\w+\.(com|org|net)\n", "alan@enigma.com", "invalid", "does not fully"),
        ("regex", r"\d+", "12a", "invalid", "does not fully match"),
        ("json", CAR, '{"brand": "Mazda", "car_type": "Coupe"}', "valid", None),
        ("json", CAR, '{"brand": "Mazda", "car_type": "coupe"}', "invalid", "$.car_type: "),
        ("json", CAR, '{"car_type": "SUV"}', "invalid", "'brand' is a required property"),
        ("json", CAR, '{"brand": "Mazda",\n "x": }', "invalid", "line 2, column 7"),
        ("json", '{"type": "string", "format": "email"}', '"not-an-email"', "invalid",
         "is not a 'email'"),
        ("json", '{"type": "string", "format": "date"}', '"2024-02-30"', "invalid", "'date'"),
        ("json", '{"type": "string", "format": "date"}', '"2024-02-29"', "valid", None),
        ("json", '{"type": "string", "format": "iri"}', '"http://exa mple.com"', "invalid",
         "is not a 'iri'"),
        ("json", '{"type": "string", "format": "iri"}', '"http://example.com/ü"', "valid", None),
        ("json", '{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number",'
                 ' "minimum": 5, "exclusiveMinimum": true}', "5", "invalid", "$:"),
        ("json", '{"$schema": "https://json-schema.org/draft/2020-12/schema",'
                 ' "exclusiveMinimum": 5}', "5", "invalid", "less than or equal"),
        ("json", PERCENT, '{"a/b": "x", "m~n": 1}', "valid", None),
        ("json", PERCENT, '{"a/b": 1}', "invalid", "$['a/b']: 1 is not of type 'string'"),
        ("json", PERCENT, '{"m~n": "1"}', "invalid", "is not of type 'integer'"),
        ("json", LINKED, '{"next": {"next": {}}}', "valid", None),
        ("json", LINKED, '{"next": {"next": 1}}', "invalid", "$.next.next: 1 is not of type"),
        ("grammar", SQL, "SELECT username,email FROM users", "valid", None),
        ("grammar", SQL, "SELECT username, email FROM users", "invalid", "line 1, column 17"),
        ("grammar", SQL, "SELECT username", "invalid", "ends early"),
    ],
)
def test_validate(mode, constraint, text, status, error):
    verdict = validate(from_text(mode, constraint), text)
    assert verdict.status == status, verdict.errors
    if error:
        assert any(error in e for e in verdict.errors), verdict.errors
    else:
        assert verdict.errors == []


def test_cut_at_max_tokens_is_truncated_never_valid():
    verdict = validate(from_text("choice", "yes\nno"), "yes", finish_reason="length")
    assert verdict.status == "truncated"
    assert "max tokens" in verdict.errors[0]


# A schema no matcher compiles (a backreference): what is cut can still be judged.
UNCOMPILABLE = '{"type": "string", "pattern": "^(a+)+\\\\1$"}'


@pytest.mark.parametrize(("text", "status", "why"), [
    ("The story of a dog.", "invalid", "not on the way to any JSON document"),
    ('"bbb"', "invalid", "a finished JSON value"),
    ('{"a": 1}', "invalid", "a finished JSON value"),
    ('"aa', "truncated", "unknown"),  # a string still open: more could follow
    ("12", "truncated", "unknown"),  # a number can grow
])
def test_cut_output_of_a_schema_no_matcher_compiles(text, status, why):
    verdict = validate(from_text("json", UNCOMPILABLE), text, finish_reason="length")
    assert verdict.status == status
    assert any(why in error for error in verdict.errors), verdict.errors


def test_engine_error_is_its_own_verdict():
    verdict = validate(from_text("regex", "a"), "", finish_reason="error",
                       engine_error="grammar compile failed")
    assert (verdict.status, verdict.errors) == ("error", ["grammar compile failed"])
