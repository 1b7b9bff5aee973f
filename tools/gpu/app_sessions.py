"""Many browser sessions at once through a served app (gradio_client), every preset.

    python tools/gpu/app_sessions.py URL SESSIONS OUT.json

Each session is its own gradio_client Client and clicks every preset once, all sessions at
the same time. Records verdicts, escapes and the largest tokens/s shown.
"""

import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from gradio_client import Client

from playground.core.presets import load_presets


def session(url: str) -> list[dict]:
    client = Client(url, verbose=False)
    rows = []
    for preset in load_presets().values():
        try:
            result = client.predict(preset.mode, preset.constraint_text, preset.prompt,
                                    preset.settings.model_dump(), api_name="/generate")
        except Exception as exc:  # a failed click is a finding, not a crash of the script
            rows.append({"name": preset.name, "exception": str(exc)[:300]})
            continue
        for side in ("constrained", "unconstrained"):
            r = result[side]
            rows.append({"name": preset.name, "side": side, "verdict": r["verdict"],
                         "escaped": r.get("constraint_escaped"), "text": r["text"][:200],
                         "tokens_per_s": r["tokens_per_s"], "output_tokens": r["output_tokens"]})
    return rows


def main() -> None:
    url, sessions, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    start = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        rows = [row for rows in pool.map(session, [url] * sessions) for row in rows]
    summary = {
        "sessions": sessions, "wall_s": time.perf_counter() - start,
        "constrained": dict(Counter(r["verdict"] for r in rows if r.get("side") == "constrained")),
        "unconstrained": dict(Counter(r["verdict"] for r in rows
                                      if r.get("side") == "unconstrained")),
        "escaped": sum(bool(r.get("escaped")) for r in rows),
        "exceptions": sum("exception" in r for r in rows),
        "max_tokens_per_s": max((r.get("tokens_per_s") or 0) for r in rows),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    with open(out, "w") as f:
        json.dump({"summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
