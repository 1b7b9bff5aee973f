"""Downloads live in one self-pruning folder, each with its plain file name."""

import os
import time
from pathlib import Path

from playground.run import downloads


def test_files_keep_their_names_and_old_downloads_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "ROOT", tmp_path)
    old = downloads.save({"batch.csv": "a,b\n"})
    hour_ago = time.time() - downloads.KEEP_S - 1
    os.utime(Path(old[0]).parent, (hour_ago, hour_ago))
    new = downloads.save({"batch.jsonl": "{}\n", "batch.csv": "x\n"})
    assert [Path(p).name for p in new] == ["batch.jsonl", "batch.csv"]
    assert Path(new[1]).read_text() == "x\n"
    assert not Path(old[0]).exists()
    assert len(list(tmp_path.iterdir())) == 1
