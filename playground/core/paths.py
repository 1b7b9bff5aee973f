"""Where the playground keeps what it prepares once (converted models, tokenizers)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("PLAYGROUND_CACHE",
                                Path.home() / ".cache" / "structured-playground"))
