"""The bench's figure: throughput per concurrency level and one request per mode, the
playground's path beside the raw engine's (matplotlib, imported only to draw it)."""

from __future__ import annotations

import platform
from typing import Any


def plot(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(report["throughput"])
    series = ["playground_constrained", "raw_constrained", "playground_free", "raw_free"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.2
    for index, name in enumerate(series):
        values = [report["throughput"][level][name] for level in levels]
        left.bar([i + (index - 1.5) * width for i in range(len(levels))], values, width,
                 label=name.replace("_", ", "))
    left.set_xticks(range(len(levels)), levels)
    left.set_xlabel("concurrent requests")
    left.set_ylabel("output tokens/s")
    left.set_title("JSON schema: playground vs raw engine")
    left.set_ylim(0, left.get_ylim()[1] * 1.3)  # headroom, so the legend covers no bar
    left.legend(ncols=2, loc="upper left")
    modes = list(report["single"])
    for index, path_name in enumerate(["playground", "raw"]):
        values = [report["single"][m][path_name]["latency_s"] for m in modes]
        right.bar([i + (index - 0.5) * 0.35 for i in range(len(modes))], values, 0.35,
                  label=path_name)
    right.set_xticks(range(len(modes)), modes)
    right.set_ylabel("latency of one request (s)")
    right.set_title("one request per mode")
    right.set_ylim(0, right.get_ylim()[1] * 1.2)
    right.legend(ncols=2, loc="upper left")
    figure.suptitle(f"{report['engine']}: {report['model']} on "
                    f"{report['machine'].get('gpu') or platform.processor() or 'CPU'}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
