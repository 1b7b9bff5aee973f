"""The Tool call tab's constraint: tools, a tool choice, and the calls found in an output.

Pure (stdlib and the schema module): the editor's text is OpenAI's `tools` format with a
`tool_choice` beside it, so the whole tab travels as one text (history, share, batch,
export). Calls are written in the Hermes format Qwen2.5's chat template teaches:
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`; the backends turn the
tools into a structural tag of that format, and `call_errors` judges any output by it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from playground.core.schema import check_schema, instance_errors, parse_json
from playground.errors import ConstraintError

# The model's call format (Hermes, as Qwen2.5's template writes it); vLLM's hermes parser
# and its structural-tag builder read the same tags.
TRIGGER = "<tool_call>"
CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
CLOSE_TAG = "</tool_call>"
# Between two calls of `required`: what Qwen2.5 writes between parallel calls.
CALL_SEPARATOR = "\n"
# OpenAI's rule for a function name; it also keeps a name safe inside the tag's JSON.
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 32
Choice = Literal["auto", "required", "named"]
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any] | bool

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}}

    def call_begin(self) -> str:
        """What the structural tag writes before the arguments."""
        return f'{CALL_OPEN}{{"name": "{self.name}", "arguments": '

    @staticmethod
    def call_end() -> str:
        return "}" + CALL_CLOSE


@dataclass(frozen=True)
class ToolSet:
    """The tools and the tool choice (`ToolCalls` in core.constraints is the constraint)."""

    tools: tuple[Tool, ...]
    choice: Choice = "auto"
    named: str | None = None  # the one tool a named choice calls

    @classmethod
    def read(cls, text: str) -> tuple[tuple[Tool, ...], Choice, str | None]:
        """(tools, choice, named) of the editor's text; ConstraintError where it is wrong."""
        if not text.strip():
            raise ConstraintError("tool: the tools are empty; give "
                                  '{"tool_choice": "auto", "tools": [...]}')
        return read_document(parse_json(text, "tool"))

    @cached_property
    def text(self) -> str:
        return json.dumps(self.document(), sort_keys=True)

    def document(self) -> dict[str, Any]:
        return {"tool_choice": self.openai_tool_choice(), "tools": self.openai_tools()}

    def openai_tools(self) -> list[dict[str, Any]]:
        return [tool.openai() for tool in self.tools]

    def openai_tool_choice(self) -> str | dict[str, Any]:
        if self.choice == "named":
            return {"type": "function", "function": {"name": self.named}}
        return self.choice

    @property
    def allowed(self) -> tuple[Tool, ...]:
        """The tools a call may name under the tool choice."""
        return tuple(t for t in self.tools if self.choice != "named" or t.name == self.named)

    def tool(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)

    def to_text(self) -> str:
        return json.dumps(self.document(), indent=2, ensure_ascii=False)


def read_document(document: Any) -> tuple[tuple[Tool, ...], Choice, str | None]:
    """OpenAI's request fields: {"tools": [...], "tool_choice": ...}, or a bare list."""
    if isinstance(document, list):
        document = {"tools": document}
    if not isinstance(document, dict):
        raise ConstraintError('tool: give a JSON object {"tool_choice": ..., "tools": [...]}')
    unknown = sorted(set(document) - {"tools", "tool_choice"})
    if unknown:
        raise ConstraintError(f"tool: unknown key {unknown[0]!r}; use tools and tool_choice")
    raw = document.get("tools")
    if not isinstance(raw, list) or not raw:
        raise ConstraintError("tool: tools must be a list of at least one tool")
    if len(raw) > MAX_TOOLS:
        raise ConstraintError(f"tool: {len(raw)} tools; at most {MAX_TOOLS}")
    tools = tuple(_tool(item, index) for index, item in enumerate(raw))
    names = [tool.name for tool in tools]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConstraintError(f"tool: tools[{index}]: the name {name!r} is used twice")
    choice, named = _choice(document.get("tool_choice", "auto"), names)
    return tools, choice, named


def _tool(item: Any, index: int) -> Tool:
    where = f"tool: tools[{index}]"
    if not isinstance(item, dict):
        raise ConstraintError(f"{where}: a tool is an object "
                              '{"type": "function", "function": {"name": ..., ...}}')
    if "function" in item:  # OpenAI's form; a flat {"name", ...} is read as its function
        if item.get("type", "function") != "function":
            raise ConstraintError(f"{where}: type must be \"function\"")
        item = item["function"]
        if not isinstance(item, dict):
            raise ConstraintError(f"{where}: function must be an object")
    unknown = sorted(set(item) - {"name", "description", "parameters", "strict", "type"})
    if unknown:
        raise ConstraintError(f"{where}: unknown key {unknown[0]!r}; a function has name, "
                              "description and parameters")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # `$` lets a "\n" through
        raise ConstraintError(f"{where}: the name {str(name)[:70]!r} must be 1 to 64 letters, "
                              "digits, _ or -")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise ConstraintError(f"{where} ({name}): description must be a string")
    parameters = item.get("parameters", _EMPTY_OBJECT)
    if not isinstance(parameters, dict | bool):
        raise ConstraintError(f"{where} ({name}): parameters must be a JSON Schema object")
    try:
        check_schema(parameters)
    except ConstraintError as exc:
        raise ConstraintError(f"{where} ({name}): parameters: "
                              f"{str(exc).removeprefix('json: ')}") from None
    return Tool(name, description, parameters)


def _choice(value: Any, names: list[str]) -> tuple[Choice, str | None]:
    if value in ("auto", "required"):
        return value, None
    if value == "none":
        raise ConstraintError('tool: tool_choice "none" leaves nothing to constrain; use the '
                              "unconstrained side, or auto, required or a tool's name")
    if isinstance(value, dict):  # OpenAI's {"type": "function", "function": {"name": ...}}
        function = value.get("function")
        value = function.get("name") if isinstance(function, dict) else None
    if isinstance(value, str) and value in names:
        return "named", value
    raise ConstraintError(f"tool: tool_choice {str(value)[:70]!r} must be auto, required, or "
                          f"one of the tools: {', '.join(names)}")


# ---- calls in an output -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One `<tool_call>` block of an output, parsed as far as it goes."""

    index: int  # 1-based, as the verdict names it
    raw: str  # the text between the tags
    closed: bool
    name: str | None = None
    arguments: Any = None
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "arguments": self.arguments,
                "errors": list(self.errors)}


@dataclass(frozen=True)
class Parsed:
    """An output split into free text and calls, in order."""

    pieces: tuple[str | Call, ...]

    @property
    def calls(self) -> list[Call]:
        return [piece for piece in self.pieces if isinstance(piece, Call)]

    @property
    def text(self) -> str:
        """The free text outside every call."""
        return "".join(piece for piece in self.pieces if isinstance(piece, str))


def split_calls(text: str) -> list[str | Call]:
    """Free text and raw calls (unjudged), in order; an unclosed call runs to the end."""
    pieces: list[str | Call] = []
    at = count = 0
    while (start := text.find(TRIGGER, at)) != -1:
        if start > at:
            pieces.append(text[at:start])
        body_at = start + len(TRIGGER)
        end = _call_end(text, body_at)
        closed = end != -1
        raw = text[body_at:end if closed else len(text)]
        count += 1
        pieces.append(Call(count, raw, closed))
        at = end + len(CLOSE_TAG) if closed else len(text)
    if at < len(text):
        pieces.append(text[at:])
    return pieces


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


def _call_end(text: str, body_at: int) -> int:
    """Where the call's closing tag starts: after the JSON object the call holds, so a
    </tool_call> inside an argument's string is text (both grammars allow it there); the
    first tag where the body is no JSON (the verdict then says why)."""
    try:
        _, after = _DECODER.raw_decode(text, _SPACE.match(text, body_at).end())
    except (ValueError, RecursionError):
        return text.find(CLOSE_TAG, body_at)
    return text.find(CLOSE_TAG, after)


def parse_calls(constraint: ToolSet, text: str) -> Parsed:
    """Every call judged: JSON, a defined (and allowed) name, arguments by its schema."""
    return Parsed(tuple(_judged(constraint, piece) if isinstance(piece, Call) else piece
                        for piece in split_calls(text)))


def _judged(constraint: ToolSet, call: Call) -> Call:
    where = f"call {call.index}"
    if not call.closed:
        return Call(call.index, call.raw, False,
                    errors=(f"{where}: {TRIGGER} is never closed by {CLOSE_TAG}",))
    try:
        value = json.loads(call.raw)
    except json.JSONDecodeError as exc:
        return Call(call.index, call.raw, True, errors=(
            f"{where}: not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}",))
    except RecursionError:
        return Call(call.index, call.raw, True, errors=(f"{where}: nested too deeply",))
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return Call(call.index, call.raw, True, errors=(
            f'{where}: $: a call is an object {{"name": ..., "arguments": {{...}}}}',))
    name, arguments = value["name"], value.get("arguments")
    errors = [f"{where}: $: unknown key {key!r}" for key in value
              if key not in ("name", "arguments")]
    tool = constraint.tool(name)
    if tool is None:
        errors.append(f"{where}: $.name: {name[:70]!r} is not a defined tool "
                      f"({', '.join(t.name for t in constraint.tools)})")
    elif tool not in constraint.allowed:
        errors.append(f"{where}: $.name: {name!r} is not the tool the tool choice names "
                      f"({constraint.named})")
    if "arguments" not in value:
        errors.append(f"{where}: $: 'arguments' is a required property")
    elif tool is not None:
        errors += [f"{where} ({name}): " + _under_arguments(error)
                   for error in instance_errors(tool.parameters, arguments)]
    return Call(call.index, call.raw, True, name, arguments, tuple(errors))


def _under_arguments(error: str) -> str:
    """A validator error's JSON path ("$.city: ...") as the call's ("$.arguments.city")."""
    return "$.arguments" + error[1:] if error.startswith("$") else error


def call_errors(constraint: ToolSet, text: str) -> list[str]:
    """What in `text` breaks the tools: each call's errors, and a missing required call."""
    parsed = parse_calls(constraint, text)
    errors = [error for call in parsed.calls for error in call.errors]
    if constraint.choice != "auto" and not parsed.calls:
        wanted = f"a call of {constraint.named}" if constraint.choice == "named" \
            else "at least one tool call"
        errors.append(f"no tool call: tool_choice {constraint.choice} asks for {wanted}")
    if constraint.choice == "named" and len(parsed.calls) > 1:
        errors.append(f"{len(parsed.calls)} calls: a named tool choice makes exactly one")
    return errors


def tools_prompt(tools: list[dict[str, Any]]) -> str:
    """The tools in Hermes style, for a chat template with no tools section of its own
    (Qwen2.5's wording, so every model is taught the same call format)."""
    lines = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n"
            f"<tools>\n{lines}\n</tools>\n\nFor each function call, return a json object "
            "with function name and arguments within <tool_call></tool_call> XML tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
            "</tool_call>")


def calls_found(text: str, errors: list[str]) -> dict[str, Any]:
    """The calls of `text` (name and arguments as far as they parse) with the verdict's
    errors of each, and the free text: what the page and the API show. Linear: the
    arguments were validated by the verdict (in a worker, under its time limit)."""
    calls = []
    free: list[str] = []
    for piece in split_calls(text):
        if isinstance(piece, str):
            free.append(piece)
            continue
        name, arguments = None, None
        try:
            value = json.loads(piece.raw, parse_constant=_refuse,
                               parse_float=_finite) if piece.closed else None
        except (ValueError, RecursionError):  # not JSON, NaN/Infinity (no file has it)
            value = None
        if isinstance(value, dict):
            name = value.get("name") if isinstance(value.get("name"), str) else None
            arguments = value.get("arguments")
            # Deeper than a history file or the API's JSON can hold (pydantic stops at
            # ~255 levels): the verdict and the raw text stay; the table leaves it out.
            if _depth(arguments) > MAX_SHOWN_DEPTH:
                arguments = f"(nested over {MAX_SHOWN_DEPTH} levels: see the output)"
        mine = (f"call {piece.index}:", f"call {piece.index} (")
        calls.append({"index": piece.index, "name": name, "arguments": arguments,
                      "errors": [error for error in errors if error.startswith(mine)]})
    return {"calls": calls, "text": "".join(free)}


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON, but inf in Python and in no JSON file
        raise ValueError(f"{text[:20]} is past a float")
    return value


MAX_SHOWN_DEPTH = 64


def _depth(value: Any) -> int:
    """How deep containers nest in a parsed value (a loop: it may nest ~1000 deep)."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            pending += [(child, level + 1) for child in (item.values() if isinstance(
                item, dict) else item)]
    return deepest
