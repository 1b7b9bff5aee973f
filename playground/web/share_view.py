"""Share link on the page: a tab's state into the page's URL, and back into the tab on load
(run/share.py holds the state and its checks), plus the `/share` endpoint.

Nothing is stored on the server: the link is the state. Opening one fills its tab and runs
nothing until the user clicks Run.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr

from playground.core.constraints import MODES, Mode
from playground.errors import InputError
from playground.run import share
from playground.web.controls import controls_from_settings, options_from_controls
from playground.web.markdown_safe import plain

log = logging.getLogger(__name__)

# After the server made the token: the page's own address (a proxy's path and other query
# parameters kept) with ?share=<token>, put in the address bar without a reload.
TO_URL_JS = """(token, shown) => {
  if (!token) return shown;
  const url = new URL(window.location.href);
  url.searchParams.set("share", token);
  url.hash = "";
  window.history.replaceState(null, "", url);
  return url.href;
}"""
FILLED = 9  # a tab's prompt, editor and its seven sampling controls, first in its fields


def share_click(mode: str, constraint: str, prompt: str, *controls: Any) -> tuple[str, str]:
    """(the token, the link box): the token alone, which TO_URL_JS makes a link, or no
    token and the reason in the box."""
    try:
        options = options_from_controls(*controls)
        return share.encode(share.shared_tab(mode, constraint, prompt, options)), ""
    except InputError as exc:
        return "", f"Not shared: {exc}"


def share_parts(mode: Mode, editor: gr.components.Component, prompt: gr.Textbox,
                controls: Sequence[gr.components.Component]) -> gr.Textbox:
    """The tab's Share link button and the box with the link to copy."""
    with gr.Row(equal_height=False):
        button = gr.Button("Share link", scale=0, min_width=160, elem_id=f"{mode}-share")
        shown = gr.Textbox(label="Share link", interactive=False, max_lines=1,
                           buttons=["copy"], scale=4, elem_id=f"{mode}-share-link",
                           placeholder="a link to this tab's inputs (nothing is stored)")
        token = gr.Textbox(visible=False)
    button.click(lambda *values: share_click(mode, *values), [editor, prompt, *controls],
                 [token, shown], api_name=False, queue=False, show_progress="hidden").then(
        None, [token, shown], shown, js=TO_URL_JS, api_name=False, queue=False)
    return shown


def restored(query: Mapping[str, str], widths: Mapping[str, int]) -> list[Any]:
    """What a page load fills: [the selected tab, then `widths[mode]` values per mode tab].

    No link: nothing. A good one: its tab selected, with its prompt, constraint and
    settings (the tab's check line follows the editor). A bad one: the defaults, and the
    reason in the first tab's check line (the tab a page opens on)."""
    token = query.get(share.QUERY)
    skipped = {mode: [gr.skip()] * widths[mode] for mode in MODES}
    if token is None:
        return [gr.skip(), *(value for mode in MODES for value in skipped[mode])]
    try:
        state = share.decode(token)
    except InputError as exc:
        log.info("a bad share link: %s", exc)
        first = MODES[0]
        skipped[first][-1] = f'<span class="bad">{plain(str(exc))}</span>'
        gr.Warning(html.escape(str(exc)))  # names taken from the link
        return [gr.skip(), *(value for mode in MODES for value in skipped[mode])]
    values = [state.prompt, state.constraint, *controls_from_settings(state.settings)]
    skipped[state.mode][:FILLED] = values
    return [gr.Tabs(selected=state.mode),
            *(value for mode in MODES for value in skipped[mode])]


def wire_load(demo: gr.Blocks, tabs: gr.Tabs,
              fields: Mapping[Mode, Sequence[gr.components.Component]]) -> None:
    """On page load, a ?share= link back in its tab. `fields[mode]`: the tab's prompt,
    editor and controls first, its check line last (page._mode_tab's list)."""
    widths = {mode: len(fields[mode]) for mode in MODES}

    def on_load(request: gr.Request) -> list[Any]:
        return restored(dict(request.query_params or {}), widths)

    every = [component for mode in MODES for component in fields[mode]]
    demo.load(on_load, None, [tabs, *every], api_name=False, show_progress="hidden")


def page_url(request: gr.Request | None) -> str:
    """The app's address as the client reached it (a proxy's forwarded host and scheme
    honoured, as Gradio does for file links); "" when unknown, for a relative link."""
    raw = getattr(request, "request", None)
    if raw is None:
        return ""
    from gradio import route_utils  # Gradio's own reading of the proxy headers

    path = raw.url.path
    route = path[path.find("/gradio_api"):] if "/gradio_api" in path else path
    return route_utils.get_root_url(raw, route, None) + "/"


def api_share(mode: str, constraint: str, prompt: str,
              options: dict[str, Any] | str | None, request: gr.Request) -> dict[str, str]:
    """The `/share` endpoint: the link (and its token) for a tab's state, checked as
    /generate checks its arguments; a bad one is a one-line error."""
    try:
        token = share.encode(share.shared_tab(mode, constraint, prompt, options))
    except InputError as exc:
        log.info("input error: %s", exc)
        raise gr.Error(str(exc), print_exception=False) from None
    return {"link": share.link(page_url(request), token), "token": token}


def add_api() -> None:
    """`/share`, off the queue: cheap, and bounded by the input limits."""
    gr.api(api_share, api_name="share", queue=False)
