import pytest

from playground.core.constraints import Choice, JsonSchema, LarkGrammar, Regex, from_text
from playground.errors import ConstraintError


@pytest.mark.parametrize(
    ("mode", "text", "expected"),
    [
        ("choice", "Positive\nNegative\n", Choice(("Positive", "Negative"))),
        ("choice", "a b\n\n c", Choice(("a b", " c"))),
        ("regex", r"\d+", Regex(r"\d+")),
        ("json", '{"type": "integer"}', JsonSchema({"type": "integer"})),
        ("grammar", 'start: "a"+', LarkGrammar('start: "a"+')),
    ],
)
def test_from_text_builds(mode, text, expected):
    assert from_text(mode, text) == expected


@pytest.mark.parametrize(
    ("mode", "text", "message"),
    [
        ("choice", "\n\n", "at least one choice"),
        ("choice", "a\nb\na", "line 3: 'a' is listed twice"),
        ("regex", "", "empty"),
        ("regex", "ab(c", "missing ), unterminated subpattern at position 2"),
        ("regex", "a{2,1}", "position 2"),
        ("json", "", "empty"),
        ("json", '{\n  "type": "object",\n}', "line 3, column 1"),
        ("json", "[1, 2]", "must be a JSON object"),
        ("json", '{"type": "strin"}', "schema invalid at $.type"),
        ("json", '{"properties": {"a": {"minimum": "x"}}}', "$.properties.a.minimum"),
        ("json", '{"$ref": "#/$defs/missing"}', "'#/$defs/missing' at $.$ref points nowhere"),
        ("json", '{"$defs": {"a b": {}}, "$ref": "#/$defs/a b"}', "not a 'uri-reference'"),
        ("json", '{"items": {"$ref": "https://example.com/item.json"}}',
         "at $.items.$ref points outside the schema: copy the referenced schema"),
        ("json", '{"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}',
         "$ref cycle allOf[0] -> #/$defs/a applies to the same value forever"),
        ("grammar", "", "empty"),
        ("grammar", "start: a", "a"),
        ("grammar", 'start: "a"\n  bad line here (', "line 2"),
        ("grammar", "rule: \"a\"", "start"),
        ("mode-x", "a", "unknown mode"),
    ],
)
def test_bad_constraints_say_what_and_where(mode, text, message):
    with pytest.raises(ConstraintError) as caught:
        from_text(mode, text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "warning"),
    [
        (r"(?<=a)b", "lookaround"),
        (r"(a)\1", "backreference"),
        (r"(?i)abc", "inline flags"),
        (r"\bword\b", "word boundaries"),
        (r"[a-z ]{1,400}", "slow: bounded repetition {1,400}"),
        (r"a^b", "anchors"),
    ],
)
def test_regex_dialect_and_speed_warnings(pattern, warning):
    assert any(warning in w for w in Regex.from_text(pattern).warnings)


@pytest.mark.parametrize("pattern", [r"\w+@\w+\.(com|org|net)\n", r"\d{4}-\d{2}", "^abc$"])
def test_plain_regex_has_no_warnings(pattern):
    assert Regex.from_text(pattern).warnings == []


def test_constraints_round_trip_through_editor_text():
    for constraint in [Choice(("x", "y")), Regex("a+"), JsonSchema({"type": "string"}),
                       LarkGrammar('start: "a"')]:
        assert from_text(constraint.mode, constraint.to_text()) == constraint


@pytest.mark.parametrize(
    ("schema", "warning"),
    [
        ('{"type": "string", "maxLength": 400}', "slow: maxLength 400 at $"),
        ('{"properties": {"a": {"type": "string", "pattern": "^[a-z]{1,200}$"}}}',
         "in the pattern at $.properties.a"),
        ('{"type": "array", "maxItems": 100}', "slow: maxItems 100"),
    ],
)
def test_slow_json_schemas_warn(schema, warning):
    assert any(warning in w for w in from_text("json", schema).warnings)


@pytest.mark.parametrize("schema", ['{"type": "string", "maxLength": 20}',
                                    '{"type": "array", "minItems": 90, "maxItems": 100}'])
def test_tight_bounds_do_not_warn(schema):
    assert from_text("json", schema).warnings == []
