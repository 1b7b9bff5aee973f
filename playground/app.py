"""Start the web playground: the page is served at once, the model loads behind it."""

from __future__ import annotations

import argparse
import sys

from playground.engines import create_engine
from playground.presets import load_presets
from playground.ui import CSS, build_ui


def serve(args: argparse.Namespace) -> int:
    engine = create_engine(args, log=lambda message: print(message, file=sys.stderr))
    demo = build_ui(engine, load_presets())
    demo.queue(default_concurrency_limit=None)
    demo.launch(server_name=args.host, server_port=args.port, css=CSS,
                prevent_thread_lock=True)
    # Loading starts once the page is served: its imports would otherwise hold the GIL
    # against gradio's and delay the page (measured: 8.6 s to the page with vLLM).
    engine.start_background_load()
    demo.block_thread()
    return 0
