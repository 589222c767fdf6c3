"""export: models/best.pt as ONNX (fp32, and int8 calibrated on training tiles), checked against PyTorch.

python -m stages.export --checkpoint models/best.pt --tiles data/tiles --splits data/splits \\
    --output models/export --report metrics/export.json

Writes model.onnx and model.int8.onnx, and metrics/export.json: the fp32 model's largest absolute
probability difference from PyTorch (fp32 both) and its argmax agreement on the test tiles, which
must reach export.min_agreement, else the stage fails with one line and writes nothing; the int8
model's agreement with PyTorch fp32 is reported beside it (its accuracy is judged by mIoU:
docs/model-artifact.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from stages.core.data.tilestore import TileStore, read_index
from stages.core.inference.export import (
    compare,
    evenly_spaced,
    onnx_bytes,
    quantize_int8,
    require_agreement,
    tile_batches,
)
from stages.core.inference.probabilities import trained_model_probabilities
from stages.core.inference.runtimes import FP32_MODEL, INT8_MODEL, onnxruntime_probabilities
from stages.core.io.errors import PipelineError, run_stage
from stages.core.io.outputs import atomic_file, write_json
from stages.core.io.params import DEFAULT_PARAMS, ExportParams, load_params, read_section
from stages.core.model.checkpoint import load_trained_model

CHECK_BATCH = 8


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tiles", type=Path, required=True, help="output of the tile stage")
    parser.add_argument("--splits", type=Path, required=True, help="output of the split stage")
    parser.add_argument("--output", type=Path, required=True, help="folder for model.onnx and model.int8.onnx")
    parser.add_argument("--report", type=Path, required=True, help="the check's figures (JSON)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    params = read_section(load_params(args.params), "export", ExportParams)

    trained = load_trained_model(args.checkpoint)
    store = TileStore(args.tiles)
    check_tiles = evenly_spaced(read_index(args.splits / "test.csv"), params.check_tiles)
    calibration_tiles = evenly_spaced(read_index(args.splits / "train.csv"), params.calibration_tiles)
    if not check_tiles:
        raise PipelineError("export check: the test split is empty; set split.ratios.test above 0")
    reference = trained_model_probabilities(trained, torch.device("cpu"), precision="fp32", tta=False)

    with tempfile.TemporaryDirectory(prefix="landcover-export-") as scratch:
        fp32, int8 = Path(scratch) / FP32_MODEL, Path(scratch) / INT8_MODEL
        fp32.write_bytes(onnx_bytes(trained, params.opset))
        fp32_agreement = compare(
            reference, onnxruntime_probabilities(fp32), tile_batches(store, check_tiles, CHECK_BATCH)
        )
        print(
            f"export: onnxruntime fp32 vs PyTorch fp32 on {len(check_tiles)} test tiles: largest probability "
            f"difference {fp32_agreement.max_abs_diff:.3g}, argmax agreement {fp32_agreement.argmax_agreement:.4%}"
        )
        require_agreement(fp32_agreement, params.min_agreement, "the ONNX model (onnxruntime, fp32)")

        quantize_int8(fp32, int8, tile_batches(store, calibration_tiles, CHECK_BATCH))
        int8_agreement = compare(
            reference, onnxruntime_probabilities(int8), tile_batches(store, check_tiles, CHECK_BATCH)
        )
        print(
            f"export: onnxruntime int8 vs PyTorch fp32: largest probability difference "
            f"{int8_agreement.max_abs_diff:.3g}, argmax agreement {int8_agreement.argmax_agreement:.4%} "
            f"(calibrated on {len(calibration_tiles)} training tiles)"
        )

        for staged in (fp32, int8):
            with atomic_file(args.output / staged.name) as staging:
                staging.write_bytes(staged.read_bytes())
    write_json(
        args.report,
        {
            "check_tiles": len(check_tiles),
            "calibration_tiles": len(calibration_tiles),
            "onnxruntime_fp32": fp32_agreement.as_dict(),
            "onnxruntime_int8": int8_agreement.as_dict(),
        },
    )
    print(f"export: {args.output / FP32_MODEL}, {args.output / INT8_MODEL}, {args.report}")


if __name__ == "__main__":
    run_stage(main)
