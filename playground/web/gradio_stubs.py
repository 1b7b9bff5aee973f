"""Gradio without its type-stub rewrite and its optional integrations at import, so the
page is served sooner.

Gradio 6.31 defines each component class through `ComponentMeta`, which reads the class's
source file, parses it with `ast` and rewrites the `.pyi` stub beside it
(`create_or_modify_pyi`): for editors, never read at run time. That was 0.85 s of the
2.6 s `import gradio` took on the 2-core machine (1.7 s without), every launch, before
the page. A finder on `sys.meta_path` turns it into a no-op as `gradio.component_meta`
loads, before any component class is defined; if gradio changes, nothing is patched.

Gradio also imports two optional packages wherever they are installed: `mcp`, for its MCP
server (which `launch_options` turns off; vLLM depends on mcp, so the GPU machine has it),
as it loads, and IPython, to ask whether it runs in a notebook, as the first Blocks is
built. That was 0.55 s + 0.24 s on the 2-core machine. Asked by gradio's own code, and only
while neither is loaded, the finder answers "not installed", as gradio expects of a plain
install (a server is no notebook: had IPython been running, it would be loaded); any other
importer gets them as usual.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MODULE = "gradio.component_meta"
# Imported by gradio's __init__ only to offer features this app does not use.
OPTIONAL = frozenset({"mcp", "IPython"})


class _SkipStubs(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        top = name.partition(".")[0]
        if top in OPTIONAL and top not in sys.modules and _imported_by_gradio():
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        if name != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, "create_or_modify_pyi", None)):
                module.create_or_modify_pyi = _no_stub  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _imported_by_gradio() -> bool:
    """Whether the module running the import statement is gradio's (past importlib's
    frames)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("importlib", "_frozen_importlib")):
            return module == "gradio" or module.startswith("gradio.")
        frame = frame.f_back
    return False


def _no_stub(*_: Any) -> None:
    return None


def skip_stub_writing() -> None:
    """Install the finder once; a no-op where gradio is already imported."""
    if MODULE in sys.modules or any(isinstance(f, _SkipStubs) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SkipStubs())
