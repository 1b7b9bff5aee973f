"""The token inspector: where the constraint acted, token by token.

From a run's token ids, the model's own (unconstrained) distribution at each step and a
replay of the ids through the constraint's matcher (the backend the engine used), this
builds the token strip: per token, how many tokens the constraint allowed (forced: one;
narrowed: fewer than free text allows; free), whether it overrode the model's first choice,
and the model's top alternatives. `strip_html` draws it. No engine, no timing: the service
gets the data from the engine and times the work.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from playground.backends.names import Backend
from playground.core.constraints import Constraint
from playground.engines.base import TokenDist
from playground.judging.matcher import Matcher, Step

BYTE_END = 256  # the end token of the matcher's byte vocabulary (engines without a tokenizer)


@dataclass
class Side:
    """One run, inspected."""

    tokens: list[dict[str, Any]]
    left_format_at: int | None  # the first token the constraint's matcher rejected


def kind(step: Step) -> str:
    if step.allowed is None or step.allowed >= step.vocab:
        return "free"
    return "forced" if step.allowed == 1 else "narrowed"


def token_texts(tokenizer: Any, ids: set[int]) -> dict[int, str]:
    """Each id as text, special tokens included (an end token shows as itself)."""
    ordered = sorted(ids)
    if tokenizer is None:  # the byte vocabulary
        return {i: "<end>" if i == BYTE_END else bytes([i]).decode("utf-8", "replace")
                for i in ordered if 0 <= i <= BYTE_END}
    texts = tokenizer.batch_decode([[i] for i in ordered], skip_special_tokens=False)
    return dict(zip(ordered, texts, strict=True))


def inspect_side(matcher: Matcher, tokenizer: Any, output_ids: list[int],
                 dists: list[TokenDist], constrained: bool) -> Side:
    """The strip of one run. `constrained`: the constraint masked this run, so a first
    choice it did not allow was overridden; the free run was never overridden."""
    if len(dists) != len(output_ids):
        raise ValueError(f"{len(dists)} distributions for {len(output_ids)} tokens")
    steps = matcher.replay(output_ids, [[t for t, _ in dist.top] for dist in dists])
    texts = token_texts(tokenizer, set(output_ids) | {t for d in dists for t, _ in d.top})
    tokens = []
    for token, dist, step in zip(output_ids, dists, steps, strict=True):
        allowed_top = step.checked or (None,) * len(dist.top)
        first = dist.top[0][0] if dist.top else token
        tokens.append({
            "text": texts.get(token, ""), "id": token, "allowed": step.allowed,
            "kind": kind(step),
            "override": constrained and first != token and allowed_top[0] is False,
            "logprob": dist.logprob, "rank": dist.rank,
            "top": [{"text": texts.get(t, ""), "id": t, "logprob": lp, "allowed": ok}
                    for (t, lp), ok in zip(dist.top, allowed_top, strict=True)],
        })
    rejected = next((i for i, step in enumerate(steps) if not step.accepted), None)
    return Side(tokens, rejected)


def summarize(tokens: list[dict[str, Any]], constrained_mean: float | None,
              free_mean: float | None, backend: Backend) -> dict[str, Any]:
    """Counts of one strip, and the mean log-probability each run's text had under the
    model without the constraint (how far the constraint pulled it from its own choices)."""
    counts = {name: sum(t["kind"] == name for t in tokens) for name in ("forced", "narrowed",
                                                                         "free")}
    return {"tokens": len(tokens), **counts,
            "overrides": sum(t["override"] for t in tokens),
            "mean_logprob": mean_logprob(tokens),
            "mean_logprob_constrained": constrained_mean,
            "mean_logprob_unconstrained": free_mean, "backend": backend}


def mean_logprob(tokens: list[dict[str, Any]] | None) -> float | None:
    if not tokens:
        return None
    return sum(t["logprob"] for t in tokens) / len(tokens)


def make_matcher(constraint: Constraint, tokenizer: Any, backend: Backend,
                 any_whitespace: bool) -> Matcher:
    return Matcher.create(constraint, tokenizer, backend, any_whitespace)


# ---- the strip in HTML ---------------------------------------------------------------------

CSS = """
.tokstrip {line-height:2.1;font-family:ui-monospace,monospace;font-size:13px;padding:6px 0}
.tok {position:relative;display:inline-block;padding:0 2px;margin:1px;border-radius:4px;
      border:1px solid transparent;cursor:help;white-space:pre}
.tok.forced {background:#c7d2fe} .tok.narrowed {background:#fde68a}
.tok.free {background:#bbf7d0}
.tok.override {border:2px solid #dc2626}
.tok.left {outline:3px solid #b91c1c;outline-offset:1px}
.tok.after {opacity:0.45}
.tok sub {font-size:9px;color:#374151;margin-left:1px}
.tok .tip {display:none;position:absolute;z-index:1000;left:0;top:100%;min-width:280px;
           background:#111827;color:#f9fafb;padding:6px 8px;border-radius:6px;
           font:12px/1.4 system-ui,sans-serif;white-space:normal;text-align:left}
.tok:hover .tip, .tok:focus .tip {display:block}
.tip b {color:#fca5a5}
.tip table {border-collapse:collapse;margin-top:4px;width:100%}
.tip td {padding:0 6px 0 0;border:none;background:none;color:#f9fafb}
.tip code {white-space:pre;font-family:ui-monospace,monospace;background:#374151;
           color:#f9fafb;padding:0 3px;border-radius:3px}
.legend span.tok {cursor:default}
.inspect-summary {font-size:13px;margin:4px 0}
.leftmark {color:#b91c1c;font-weight:700}
table.maskdiff {font-size:12px;border-collapse:collapse}
table.maskdiff td, table.maskdiff th {padding:1px 6px;vertical-align:top}
table.maskdiff code {white-space:pre;font-family:ui-monospace,monospace}
"""


def _shown(text: str) -> str:
    """A token's text, escaped, with its whitespace made visible."""
    if text == "":
        return "∅"
    visible = text.replace("\n", "↵").replace("\t", "→").replace("\r", "␍")
    return html.escape(visible)


def _compact(count: int) -> str:
    return f"{count}" if count < 1000 else f"{count / 1000:.3g}k"


def _probability(logprob: float) -> str:
    p = math.exp(logprob)
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def _tooltip(token: dict[str, Any], vocab_note: str) -> str:
    lines = [f"allowed here: {vocab_note}"]
    lines.append(f"without the constraint: rank {token['rank']}, "
                 f"p {_probability(token['logprob'])}")
    if token["override"]:
        first = token["top"][0]
        lines.append(f"<b>override</b>: the model's first choice <code>{_shown(first['text'])}"
                     f"</code> was not allowed")
    verdicts = {None: "", True: "✓ allowed", False: "✗ not allowed"}
    rows = "".join(
        f"<tr><td><code>{_shown(alt['text'])}</code></td>"
        f"<td>{_probability(alt['logprob'])}</td><td>{verdicts[alt['allowed']]}</td></tr>"
        for alt in token["top"])
    return ("<br>".join(lines) + "<br>model's top choices without the constraint:"
            f"<table>{rows}</table>")


INSPECTING = "inspecting the tokens …"


def no_strip_reason(side: dict[str, Any]) -> str | None:
    """Why an inspected run shows no strip, or None (it has one, was not inspected, or is
    still generating). A run shows its verdict before its strip: both runs are inspected
    after both finished, and a stopped or failed run never is (the replay needs the
    whole run); without a word the page read as if the inspector had lost it."""
    if "tokens" not in side or side.get("tokens") is not None or side.get("inspect_error"):
        return None
    verdict, reason = side.get("verdict", "running"), side.get("finish_reason")
    if verdict == "running":
        return None
    if "stopped" in (verdict, reason):
        return "no token strip: the run was stopped before it finished (only whole runs " \
               "are replayed)"
    if "error" in (verdict, reason):
        return "no token strip: the engine failed this run"
    if side.get("inspect_s") is None:
        return INSPECTING
    return "no token strip: the engine gave no token ids for this run"


def strip_html(side: dict[str, Any], constrained: bool) -> str:
    """The strip of one run's result dict (its "tokens", "inspect_summary", ...)."""
    if side.get("inspect_error"):
        return (f'<div class="inspect-summary"><span class="bad">Inspector:</span> '
                f"{html.escape(side['inspect_error'])}</div>")
    tokens = side.get("tokens")
    if tokens is None:
        why = no_strip_reason(side)
        return f'<div class="inspect-summary no-strip">{html.escape(why)}</div>' if why else ""
    left = side.get("left_format_at")
    spans = []
    for index, token in enumerate(tokens):
        classes = ["tok", token["kind"]]
        allowed = token["allowed"]
        if allowed is None:
            note = "any token (the constraint's matcher had already rejected this run)"
        elif token["kind"] == "free":
            note = f"{allowed:,} tokens (free)"
        else:
            note = f"{allowed:,} {'token (forced)' if allowed == 1 else 'tokens (narrowed)'}"
        if token["override"]:
            classes.append("override")
        if left is not None and index == left:
            classes.append("left")
            note = "✗ the constraint would not allow this token: the run left the format here"
        elif left is not None and index > left:
            classes.append("after")
        size = f"<sub>{_compact(allowed)}</sub>" if token["kind"] != "free" else ""
        if left is not None and index == left:
            spans.append('<span class="leftmark" title="the run left the format here">✗</span>')
        spans.append(f'<span class="{" ".join(classes)}" tabindex="0" data-index="{index}">'
                     f"{_shown(token['text'])}{size}"
                     f'<span class="tip">{_tooltip(token, note)}</span></span>')
    return (f'<div class="inspect-summary">{_summary_line(side, constrained)}</div>'
            f'<div class="tokstrip">{"".join(spans)}</div>{LEGEND}')


def _summary_line(side: dict[str, Any], constrained: bool) -> str:
    summary = side.get("inspect_summary") or {}

    def mean(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    parts = [f"{summary.get('tokens', 0)} tokens: {summary.get('forced', 0)} forced · "
             f"{summary.get('narrowed', 0)} narrowed · {summary.get('free', 0)} free"]
    if constrained:
        parts.append(f"{summary.get('overrides', 0)} overrides of the model's first choice")
    parts.append(f"mean log-prob without the constraint: constrained text "
                 f"{mean(summary.get('mean_logprob_constrained'))}, free run "
                 f"{mean(summary.get('mean_logprob_unconstrained'))}")
    left = side.get("left_format_at")
    if not constrained:
        parts.append('<span class="leftmark">left the format at token '
                     f"{left}</span>" if left is not None else "never left the format")
    if side.get("inspect_s") is not None:
        backend = html.escape(summary.get("backend", ""))
        parts.append(f"inspected in {side['inspect_s']:.3f} s ({backend} matcher)")
    return " · ".join(parts)


def mask_diff_html(side: dict[str, Any]) -> str:
    """The inspector's "compare backends" under the strip: where the two backends' masks
    differ along this run (a table), or that they never did."""
    found = side.get("mask_diff")
    if not found:
        return ""
    if found.get("error"):
        return (f'<div class="inspect-summary maskdiff"><span class="bad">Compare backends:'
                f"</span> {html.escape(found['error'])}</div>")
    first, second = (html.escape(name) for name in found["backends"])
    seconds = found.get("compare_s")
    took = f" ({seconds:.2f} s)" if seconds is not None else ""
    scope = (f"the first {found['compared']} of {found['tokens']} steps (the time limit ran "
             f"out)" if found.get("out_of_time") else f"{found['compared']} steps")
    steps = found["steps"]
    if not steps:
        return (f'<div class="inspect-summary maskdiff">Compare backends: {first} and '
                f"{second} allowed the same tokens at all {scope}{took}.</div>")
    rows = []
    for step in steps:
        names = found["backends"]
        refused = [name for name in names if not step["accepted"].get(name, True)]
        note = f"<br><b>{html.escape(', '.join(refused))} refuses this token</b>" \
            if refused else ""
        only = "".join(
            f"<td>{step['only'][name]:,}: "
            + " ".join(f"<code>{_shown(text)}</code>" for text in step["examples"][name])
            + "</td>" for name in names)
        rows.append(f"<tr><td>{step['step']}</td><td><code>…{_shown(step['prefix'][-24:])}"
                    f"</code></td><td><code>{_shown(step['token'])}</code>{note}</td>"
                    f"<td>{step['allowed'][names[0]]:,} / {step['allowed'][names[1]]:,}</td>"
                    f"{only}</tr>")
    header = (f"<tr><th>step</th><th>after</th><th>token</th><th>allowed {first} / "
              f"{second}</th><th>only {first}</th><th>only {second}</th></tr>")
    return (f'<div class="inspect-summary maskdiff">Compare backends: the masks differ at '
            f"{len(steps)} of {scope}{took}</div>"
            f'<table class="maskdiff">{header}{"".join(rows)}</table>')


LEGEND = ('<div class="legend"><small><span class="tok forced">forced</span> one token '
          'allowed · <span class="tok narrowed">narrowed</span> fewer than free text '
          '(allowed-set size below) · <span class="tok free">free</span> · '
          '<span class="tok free override">override</span> the model\'s first choice was not '
          'allowed · hover or tap a token for the model\'s own top 5</small></div>')
