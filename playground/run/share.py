"""A tab's state in a link: mode, constraint, prompt and sampling settings (seed included).

The state travels in the page's URL, never on the server: JSON, compressed with zlib, in
base64url without padding, after a version prefix (`v1.`). A link is input like any other,
so `decode` checks it as a click checks its arguments (run.inputs, the constraint's size
limits) and says what is wrong in one line: a link is pasted, cut short or forged.

The request options (inspect, compare backends, lenient) are not part of it: a link
restores what a run is given, not how the page shows a run.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from playground.core import limits
from playground.core.constraints import Mode
from playground.core.settings import SamplingSettings
from playground.core.text_fields import check_json_texts
from playground.errors import InputError, LimitError
from playground.judging.judge import check_sizes
from playground.run.inputs import check_request
from playground.run.service import parse_request_options, parse_settings

VERSION = "v1"
QUERY = "share"  # the URL's parameter: ...?share=<token>
_VERSION = re.compile(r"v[0-9]{1,4}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# What a JSON escape may cost per character of text (\u0001 is 6 bytes), and room for the
# field names and numbers: the most any state within the limits can unpack to.
_ESCAPE_BYTES = 6
_OVERHEAD_BYTES = 4096
_STOP_CHARS = 1000  # run.inputs refuses a longer stop string


class SharedTab(BaseModel):
    """What a share link holds: a mode tab's inputs."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode
    constraint: str
    prompt: str
    settings: SamplingSettings = SamplingSettings()


def shared_tab(mode: Any, constraint: Any, prompt: Any, options: Any) -> SharedTab:
    """The state of a tab from a request's arguments (the API's, or a link's), checked as a
    click checks them: types, sizes, text every library can take, the settings. The
    constraint is not parsed: a link may share a broken one, and its tab's check says why.

    An empty prompt is allowed (the tab's Run still refuses it). The request options are
    checked and left out."""
    options = check_request(mode, constraint, prompt, options, need_prompt=False)
    check_sizes(mode, constraint)
    settings = parse_settings(options)
    parse_request_options(options)
    return SharedTab(mode=mode, constraint=constraint, prompt=prompt, settings=settings)


def encode(state: SharedTab) -> str:
    """The link's token; LimitError past max_share_chars."""
    data = state.model_dump_json().encode("utf-8")
    body = base64.urlsafe_b64encode(zlib.compress(data, 9)).rstrip(b"=").decode("ascii")
    token = f"{VERSION}.{body}"
    limits.active().require("max_share_chars", len(token))
    return token


def link(base_url: str, token: str) -> str:
    """`base_url` with `?share=<token>` (its other query parameters kept, any old token
    replaced, its fragment dropped)."""
    parts = urlsplit(base_url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True)
             if key != QUERY]
    return urlunsplit(parts._replace(query=urlencode([*query, (QUERY, token)]), fragment=""))


def decode(token: Any) -> SharedTab:
    """The state a token holds; InputError (LimitError past a limit) in one line that
    starts with "share link: "."""
    try:
        return _decode(token)
    except LimitError as exc:
        raise LimitError(_prefixed(exc)) from None
    except InputError as exc:
        raise InputError(_prefixed(exc)) from None


def _prefixed(exc: Exception) -> str:
    return f"share link: {exc}"


def _decode(token: Any) -> SharedTab:
    if not isinstance(token, str):
        raise InputError("give the link's token as text")
    token = token.strip()
    # First: nothing else reads a token past its limit.
    limits.active().require("max_share_chars", len(token), "its token")
    version, dot, body = token.partition(".")
    if not dot or not _VERSION.fullmatch(version):
        raise InputError(f"not a share link (its token starts with {VERSION}.)")
    if version != VERSION:
        raise InputError(f"made by another version of the app ({version}); this one reads "
                         f"{VERSION} links")
    fields = _parsed(_inflated(_unbase64(body)))
    try:
        state = SharedTab.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))[:60] or "the state"
        raise InputError(f"{where}: {error['msg']}") from None
    return shared_tab(state.mode, state.constraint, state.prompt, state.settings.model_dump())


def _unbase64(body: str) -> bytes:
    bad = _BASE64URL.match(body)
    end = bad.end() if bad else 0
    if end < len(body):
        raise InputError(f"not base64url text (character {len(VERSION) + 2 + end:,} is "
                         f"{body[end]!r}); copy the whole link")
    if len(body) % 4 == 1 or not body:
        raise InputError("not base64url text (cut short?); copy the whole link")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InputError("not base64url text; copy the whole link") from None


def max_state_bytes() -> int:
    """The most JSON a state within the active limits can take."""
    limit = limits.active()
    chars = (limit.max_constraint_chars + limit.max_prompt_chars
             + limit.max_system_prompt_chars + limit.max_stop_strings * _STOP_CHARS)
    return _ESCAPE_BYTES * chars + _OVERHEAD_BYTES


def _inflated(data: bytes) -> bytes:
    """zlib data unpacked, never past max_state_bytes (a zip bomb stops there)."""
    cap = max_state_bytes()
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error:
        raise InputError("its data is not zlib-compressed; copy the whole link") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise LimitError(f"unpacks to over {cap:,} bytes, more than any tab's state within "
                         "the limits")
    if not inflater.eof:
        raise InputError("its data is cut short; copy the whole link")
    if inflater.unused_data:
        raise InputError("it has data past its end; copy the link alone")
    return out


def _parsed(data: bytes) -> Any:
    try:
        fields = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"its data is not UTF-8 text (byte {exc.start + 1:,})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"its data is not JSON: {exc.msg}") from None
    except ValueError as exc:  # an integer past Python's 4,300 digits
        raise InputError(f"its data cannot be read: {str(exc)[:120]}") from None
    except RecursionError:
        raise InputError("its data is not JSON: nested too deeply") from None
    if not isinstance(fields, dict):
        raise InputError("its data is not an object of mode, constraint, prompt, settings")
    # Before the model: a lone surrogate ("\ud800" in JSON) is text pydantic cannot read.
    check_json_texts("a field's name", list(fields))  # first: a message names the field
    for name, value in fields.items():
        check_json_texts(name[:60], value)
    return fields
