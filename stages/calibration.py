"""calibration: how well the confidence of models/best.pt matches its accuracy on the test split, before and after
its temperature (fitted on the validation split by the train stage).

python -m stages.calibration --checkpoint models/best.pt --tiles data/tiles --encoded data/encoded \\
    --split data/splits/test.csv --metrics metrics/calibration.json --details metrics/calibration_details.json

The model runs once in fp32 over the test tiles (every pixel once, ignore-value pixels left out, a seeded
subsample beyond landcover.evaluation.calibration.MAX_PIXELS). metrics/calibration.json holds the headline
figures: the temperature, the validation NLL before and after (the train stage's fit), and the test split's
expected calibration error (15 equal-width bins) and NLL at T = 1 and at the temperature.
metrics/calibration_details.json adds the fit's record (the fitted value, and why 1.0 was kept where it
was) and both reliability diagrams' bins, which the plot stage draws (plots/model/reliability.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.tilestore import TileStore, read_index
from landcover.evaluation.calibration import BINS, calibration_figures, tile_logits
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import write_json
from landcover.model.checkpoint import load_trained_model, read_training_record
from landcover.model.devices import choose_device
from landcover.training.calibration import labelled_tiles, tiles_pixels

BATCH = 8  # test tiles per forward pass


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tiles", type=Path, required=True, help="the tile stage's output")
    parser.add_argument("--encoded", type=Path, required=True, help="the encode stage's output: the tiles' labels")
    parser.add_argument("--split", type=Path, required=True, help="the test split's tile list")
    parser.add_argument("--metrics", type=Path, required=True, help="the headline figures (JSON)")
    parser.add_argument("--details", type=Path, required=True, help="the fit and the reliability bins (JSON)")
    args = parser.parse_args(argv)

    records = read_index(args.split)
    if not records:
        raise PipelineError(f"{args.split}: the test split is empty; set split.ratios.test above 0")
    trained = load_trained_model(args.checkpoint)
    fit = read_training_record(args.checkpoint)["calibration"] or {}
    temperature = trained.temperature
    store = TileStore(args.tiles, args.encoded)
    device = choose_device("auto")
    loader = labelled_tiles(records, store, BATCH)  # the batches the train stage fits the temperature on
    pixels = tile_logits(trained.model.to(device).float(), loader, trained.scaling, device, tiles_pixels(records))
    before, after = calibration_figures(pixels, 1.0), calibration_figures(pixels, temperature)
    headline = {
        "temperature": rounded(temperature),
        "val": {"nll_before": rounded(fit.get("nll_before")), "nll_after": rounded(fit.get("nll_after"))},
        "test": {
            "ece_before": rounded(before["ece"]),
            "ece_after": rounded(after["ece"]),
            "nll_before": rounded(before["nll"]),
            "nll_after": rounded(after["nll"]),
        },
    }
    details = {
        "temperature": temperature,
        "fit": fit or None,  # the train stage's record (None for a checkpoint from before it was fitted)
        "test": {"bins": BINS, "pixels": len(pixels), "labelled_pixels": pixels.seen, "before": before, "after": after},
    }
    write_json(args.metrics, headline)
    write_json(args.details, details)
    kept = f" (1.0 kept: {fit['reason']})" if fit.get("reason") else ""
    print(
        f"calibration: temperature {temperature:.4f}{kept}; test ECE {before['ece']:.4f} -> {after['ece']:.4f}, "
        f"NLL {before['nll']:.4f} -> {after['nll']:.4f} ({len(pixels)} pixels); {args.metrics}, {args.details}"
    )


if __name__ == "__main__":
    run_stage(main)
