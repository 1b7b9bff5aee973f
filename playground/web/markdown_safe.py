"""User-derived text made safe to show in a Gradio Markdown component: shown as typed.

gr.Markdown renders Markdown and HTML, so a regex such as `![a](http://host/pixel.png)(`
in an error message made the browser fetch that URL. HTML escaping alone leaves Markdown
live; here every Markdown punctuation mark is backslash-escaped too (CommonMark lets any
ASCII punctuation be escaped), then the text is HTML-escaped. For gr.HTML components use
`html.escape` alone: HTML does not read backslash escapes.
"""

from __future__ import annotations

import html
import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$])")


def plain(text: str) -> str:
    """`text` for a Markdown component: no Markdown, no HTML, no links, shown literally."""
    return html.escape(_MARKDOWN.sub(r"\\\1", str(text)))
