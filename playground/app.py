"""Start the web playground: the page is served at once, the model loads behind it."""

from __future__ import annotations

import argparse
import sys

from playground.engines import create_engine
from playground.presets import load_presets
from playground.ui import CSS, build_ui


def serve(args: argparse.Namespace) -> int:
    engine = create_engine(args, log=lambda message: print(message, file=sys.stderr))
    engine.start_background_load()
    demo = build_ui(engine, load_presets())
    demo.queue(default_concurrency_limit=None)
    demo.launch(server_name=args.host, server_port=args.port, css=CSS)
    return 0
