"""Gradio without its type-stub rewrite at import, so the page is served sooner.

Gradio 6.31 defines each component class through `ComponentMeta`, which reads the class's
source file, parses it with `ast` and rewrites the `.pyi` stub beside it
(`create_or_modify_pyi`): for editors, never read at run time. That was 0.85 s of the
2.6 s `import gradio` took on the 2-core machine (1.7 s without), every launch, before
the page. A finder on `sys.meta_path` turns it into a no-op as `gradio.component_meta`
loads, before any component class is defined; if gradio changes, nothing is patched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MODULE = "gradio.component_meta"


class _SkipStubs(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
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


def _no_stub(*_: Any) -> None:
    return None


def skip_stub_writing() -> None:
    """Install the finder once; a no-op where gradio is already imported."""
    if MODULE in sys.modules or any(isinstance(f, _SkipStubs) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SkipStubs())
