"""Gradio imported without rewriting its type stubs or loading mcp and IPython
(playground/web/gradio_stubs.py)."""

import subprocess
import sys

CODE = """
import playground.web, gradio as gr
import gradio.component_meta as meta
assert meta.create_or_modify_pyi.__name__ == "_no_stub", meta.create_or_modify_pyi
with gr.Blocks() as demo:
    box = gr.Textbox("x")
assert box.value == "x"
import sys
assert "mcp" not in sys.modules and "IPython" not in sys.modules, "optional imports loaded"
import importlib.util
if importlib.util.find_spec("mcp") is not None:  # after gradio, an import works as usual
    import mcp.types
print("ok")
"""


def test_the_stub_rewrite_and_optional_imports_are_skipped_and_components_still_work():
    found = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                           timeout=120)
    assert found.stdout.strip() == "ok", found.stderr[-2000:]
