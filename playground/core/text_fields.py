"""Text a user sends, checked once where it enters: what no library downstream can take.

A lone surrogate ("\\ud800", which JSON's `\\u` escapes and a non-UTF-8 command line both
produce) is not Unicode text: it cannot be encoded as UTF-8, so the tokenizer, the grammar
compilers and the page each failed on it with their own traceback. NUL is refused where
text becomes a prompt or a constraint (C libraries read it as an end of string), and
accepted where text is only judged (a test string, an output to check).
"""

from __future__ import annotations

from typing import Any

from playground.errors import InputError


def check_text(field: str, value: Any, nul: bool = False) -> str:
    """`value` if it is text every library can take; else InputError naming `field`.

    `nul`: whether a NUL character is allowed in this field.
    """
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise InputError(f"{field}: character {exc.start + 1:,} is a lone surrogate "
                         f"(U+{ord(bad):04X}), which is not valid Unicode text; remove it"
                         ) from None
    if not nul and "\x00" in value:
        raise InputError(f"{field}: character {value.index(chr(0)) + 1:,} is a NUL "
                         "(U+0000), which a prompt or a constraint cannot hold; remove it")
    return value


def check_texts(field: str, values: Any, nul: bool = False) -> Any:
    """`check_text` for each text in a list (others are left to the type checks)."""
    if isinstance(values, list):
        for index, value in enumerate(values):
            check_text(f"{field} {index + 1}", value, nul)
    return values


def check_json_texts(field: str, value: Any) -> Any:
    """`check_text` (NUL allowed) for every key and string inside parsed JSON, however deep
    (a loop, not recursion: a file may nest as deep as the JSON reader allows)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_text(field, item, nul=True)
        elif isinstance(item, dict):
            pending += item.keys()
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return value
