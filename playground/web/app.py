"""Start the web playground: the page is served at once, the model loads behind it."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import threading
import time
from typing import Any

import gradio as gr

from playground import log as logs
from playground.core import limits
from playground.core.presets import load_presets
from playground.engines.registry import create_engine
from playground.judging import judge
from playground.run import lifecycle
from playground.web.page import CSS, build_ui
from playground.web.status import follow_engine_concurrency, queue_load

log = logging.getLogger(__name__)
# How long a stopping server waits for the runs its engine's shutdown ended to send their
# last update, before it closes the page.
DRAIN_S = 3.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only "localhost" is known to stay on this machine
        return False


def launch_options(args: argparse.Namespace) -> dict[str, Any]:
    """demo.launch() arguments from the serve flags. Raises InputError on a bad --auth."""
    auth = limits.parse_auth(getattr(args, "auth", None) or os.environ.get(limits.AUTH_ENV))
    if auth is None and not is_loopback(args.host):
        warn_open(args.host)
    # mcp_server off whatever GRADIO_MCP_SERVER says: gradio's import skipped mcp
    # (web/gradio_stubs.py) and the page has no tools to offer an MCP client.
    return {"server_name": args.host, "server_port": args.port, "css": CSS, "auth": auth,
            "mcp_server": False,
            "max_file_size": max(limits.active().max_batch_file_bytes,
                                 limits.active().max_history_file_bytes)}


def warn_open(host: str) -> None:
    message = (f"serving on {host} WITHOUT A LOGIN: anyone who can reach this address can "
               f"use the model. Give --auth USER:PASSWORD (or set {limits.AUTH_ENV}).")
    log.warning("!" * 20 + " " + message)
    if not log.isEnabledFor(logging.WARNING):  # too loud to be hidden by --log-level
        print(f"WARNING: {message}", file=sys.stderr)


def serve(args: argparse.Namespace) -> int:
    engine = create_engine(args, log=log.info)
    options = launch_options(args)  # a bad flag is refused before anything is redirected
    logs.native_noise_once()  # before any library or child process writes
    # Before any child process starts: SIGTERM from here on stops them too (lifecycle).
    lifecycle.handle_signals()
    demo = None
    try:
        demo = build_ui(engine, load_presets(), concurrency=getattr(args, "concurrency", None),
                        history_dir=getattr(args, "history_dir", None))
        # Model events are limited by their own queue group (build_ui); the rest (the
        # editor's live check, presets) are light and never wait.
        demo.queue(default_concurrency_limit=None,
                   max_size=getattr(args, "queue_size", limits.DEFAULT_QUEUE_SIZE))
        demo.launch(prevent_thread_lock=True, **options)
        # Loading starts once the page is served: its imports would otherwise hold the GIL
        # against gradio's and delay the page (measured: 8.6 s to the page with vLLM).
        engine.start_background_load()
        if getattr(args, "concurrency", None) is None:  # the default follows the model
            follow_engine_concurrency(demo, engine)
        # Validation's worker processes start now, not on the first request
        # (playground.judging.workers).
        threading.Thread(target=judge.warm_up, name="validation-warm-up", daemon=True).start()
        lifecycle.wait()
    except KeyboardInterrupt:  # a signal while starting
        pass
    finally:
        lifecycle.stop(engine, close_page=lambda: close_page(demo))
    lifecycle.exit_now(0)
    return 0  # not reached


def close_page(demo: gr.Blocks | None) -> None:
    """Close the page once the model's queue is empty (at most DRAIN_S): the engine has
    stopped, so its runs end at once. A run's stream left open held the web server's close
    for gradio's 5 s (it looks at a stream every 10 s).

    Blocks.close, not gradio's block_thread: on Ctrl-C that closes only the web server,
    which then waited 5 s for the pages' heartbeat streams; Blocks.close ends those first."""
    if demo is None:
        return
    deadline = time.monotonic() + DRAIN_S
    while ((load := queue_load(demo)) and (load["running"] or load["waiting"])
           and time.monotonic() < deadline):
        time.sleep(0.05)
    demo.close()
