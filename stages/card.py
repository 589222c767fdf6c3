"""card: the model card beside the exported model, as Markdown and JSON.

python -m stages.card --checkpoint models/best.pt --fp32 models/export/model.onnx \\
    --int8 models/export/model.int8.onnx --test metrics/test.json --test-low metrics/test_low.json \\
    --test-high metrics/test_high.json --test-intervals metrics/test_intervals.json \\
    --export-report metrics/export.json --tiles data/tiles --splits data/splits

Writes models/export/model_card.md and models/export/model_card.json: classes and colours,
normalisation, the input size rule, training params, test metrics with their 95% intervals, the export
check, whether predict uses the int8 model (and, where not, why: its gate's reasons) and the data version. A stage
of its own after evaluate, so predict can use the exported model (docs/model-artifact.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from landcover.evaluation.card import card_content, card_json, card_markdown, content_hash, headline_intervals
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_file
from landcover.io.params import DEFAULT_PARAMS, PredictParams, load_params, read_section
from landcover.model.checkpoint import read_model_interface, read_training_record


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot read JSON ({error})") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--fp32", type=Path, required=True, help="the exported fp32 model; the card goes beside it")
    parser.add_argument("--int8", type=Path, required=True, help="the exported int8 model")
    parser.add_argument("--test", type=Path, required=True, help="headline test scores (evaluate)")
    parser.add_argument("--test-low", type=Path, required=True, help="their 95%% intervals' lower bounds (evaluate)")
    parser.add_argument("--test-high", type=Path, required=True, help="and upper bounds (evaluate)")
    parser.add_argument("--test-intervals", type=Path, required=True, help="how the intervals were made (evaluate)")
    parser.add_argument("--export-report", type=Path, required=True, help="the export check's figures")
    parser.add_argument(
        "--calibration", type=Path, help="the calibration stage's metrics (test ECE and NLL before and after)"
    )
    parser.add_argument("--tiles", type=Path, required=True)
    parser.add_argument("--splits", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    predict = read_section(load_params(args.params), "predict", PredictParams)

    card = card_content(
        read_model_interface(args.checkpoint),
        read_training_record(args.checkpoint),
        read_json(args.test),
        headline_intervals(read_json(args.test_intervals), read_json(args.test_low), read_json(args.test_high)),
        read_json(args.export_report),
        dataclasses.asdict(predict),
        content_hash(args.tiles, args.splits),
        {"fp32": args.fp32, "int8": args.int8},
        read_json(args.calibration) if args.calibration else None,
    )
    for name, text in (("model_card.json", card_json(card)), ("model_card.md", card_markdown(card))):
        with atomic_file(args.fp32.parent / name) as staging:
            staging.write_text(text)
    print(f"card: {args.fp32.parent / 'model_card.md'}, {args.fp32.parent / 'model_card.json'}")


if __name__ == "__main__":
    run_stage(main)
