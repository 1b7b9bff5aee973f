"""Files offered for download, in one folder that prunes itself.

Gradio serves a file from a path on disk; a folder per download would pile up for as long
as the server runs. Each download gets a subfolder (so its files keep their plain names)
under one root, and subfolders older than an hour are removed when the next one is made.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(tempfile.gettempdir()) / "structured-playground-downloads"
KEEP_S = 3600


def save(files: dict[str, str]) -> list[str]:
    """Write {file name: text}; the paths, in the same order."""
    ROOT.mkdir(exist_ok=True)
    _prune(time.time() - KEEP_S)
    folder = ROOT / secrets.token_hex(8)
    folder.mkdir()
    paths = []
    for name, text in files.items():
        path = folder / Path(name).name
        path.write_text(text, encoding="utf-8")
        paths.append(str(path))
    return paths


def _prune(cutoff: float) -> None:
    for old in ROOT.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass  # another server process pruned it first
