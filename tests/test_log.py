"""The server log: native libraries' repeated lines show once; everything else as written."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import json, logging, os, time
from playground import log
log.native_noise_once()
logger = log.configure("INFO")
import xgrammar
schema = json.dumps({"type": "string", "pattern": "^(?=a)a$"})
for _ in range(5):  # xgrammar warns on its C++ stderr each time it drops the lookahead
    try:
        xgrammar.Grammar.from_json_schema(schema)
    except RuntimeError:
        pass
os.write(2, b"a native line that is not noise\n")
os.write(2, b"a native line that is not noise\n")
logger.info("one line per event")
time.sleep(0.5)  # the forwarding thread writes what it read
"""


def test_native_library_noise_shows_once_and_the_rest_as_written():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    noise = [line for line in lines if "/project/cpp/" in line]
    assert len(noise) == 1, done.stderr
    assert "repeats hidden" in noise[0]
    assert lines.count("a native line that is not noise") == 2
    assert any(line.endswith("one line per event") for line in lines)
