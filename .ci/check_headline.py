"""Exit non-zero, with one line, when an experiment's headline test metrics are missing or not finite.

python .ci/check_headline.py EXPERIMENT [metrics/test.json]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

HEADLINE = ("miou_land", "miou", "mean_dice", "pixel_accuracy")


def problems(test_metrics: Path) -> list[str]:
    if not test_metrics.is_file():
        return [f"{test_metrics} is missing"]
    # json reads NaN and Infinity, which json.dumps writes for non-finite floats
    metrics = json.loads(test_metrics.read_text())
    return [
        f"{test_metrics} {key} is {metrics.get(key)!r}"
        for key in HEADLINE
        if not isinstance(metrics.get(key), (int, float)) or not math.isfinite(metrics[key])
    ]


if __name__ == "__main__":
    experiment = sys.argv[1]
    found = problems(Path(sys.argv[2] if len(sys.argv) > 2 else "metrics/test.json"))
    if found:
        sys.exit(f"error: experiment {experiment}: {'; '.join(found)}")
