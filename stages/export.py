"""export: models/best.pt as ONNX (fp32, and int8 calibrated on training tiles), checked against PyTorch.

python -m stages.export --checkpoint models/best.pt --tiles data/tiles --encoded data/encoded \\
    --splits data/splits --output models/export --report metrics/export.json

Writes model.onnx and model.int8.onnx, each with the class table, bands and scaling, tile size, the
checkpoint's sha256 and the export params in its metadata, and metrics/export.json: each model's
largest absolute probability difference from PyTorch fp32 and its argmax agreement on the test
tiles, and the int8 model's mIoU (land classes) on them against PyTorch fp32's. The fp32 model must
reach export.min_agreement, else the stage fails with one line and writes nothing: an fp32 model that
disagrees with PyTorch is an export bug. The int8 gate (export.min_int8_agreement,
export.max_int8_miou_drop) chooses, never stops: its verdict (passed, and the reasons where not) goes
into the int8 model's metadata and metrics/export.json (int8_gate), and predict with predict.int8 true
runs the int8 model only where it passed (docs/model-artifact.md).

Scratch files (the models before they are checked, quantization's own) go in a staging folder beside
the outputs, which the next run removes if this one is killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from landcover.data.tilestore import TileRecord, TileStore, read_index
from landcover.evaluation.metrics import headline_drop
from landcover.inference.blending import model_input
from landcover.inference.export import (
    INT8_GATE_KEY,
    QUANTIZATION,
    Agreement,
    Int8Gate,
    compare_all,
    evenly_spaced,
    int8_gate,
    model_metadata,
    onnx_bytes,
    quantize_int8,
    require_agreement,
    tile_batches,
    with_metadata,
)
from landcover.inference.probabilities import trained_model_probabilities
from landcover.inference.runtimes import CPU, FP32_MODEL, INT8_MODEL, gate_fallback, onnxruntime_probabilities
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_file, scratch_dir, write_json
from landcover.io.params import DEFAULT_PARAMS, ExportParams, load_params, read_section
from landcover.model.checkpoint import ModelInterface, load_trained_model, read_model_interface

CHECK_BATCH = 8


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tiles", type=Path, required=True, help="output of the tile stage")
    parser.add_argument("--encoded", type=Path, required=True, help="output of the encode stage: the tiles' labels")
    parser.add_argument("--splits", type=Path, required=True, help="output of the split stage")
    parser.add_argument("--output", type=Path, required=True, help="folder for model.onnx and model.int8.onnx")
    parser.add_argument("--report", type=Path, required=True, help="the check's figures (JSON)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    return parser.parse_args(argv)


def check_fp32(agreement: Agreement, tiles: int, minimum: float) -> None:
    """The fp32 model's agreement with PyTorch fp32 on the check tiles; at least `minimum` (export.min_agreement)."""
    print(
        f"export: onnxruntime fp32 vs PyTorch fp32 on {tiles} test tiles: largest probability "
        f"difference {agreement.max_abs_diff:.3g}, argmax agreement {agreement.argmax_agreement:.4%}"
    )
    require_agreement(agreement, minimum, "the ONNX model (onnxruntime, fp32)", "export.min_agreement")


def check_int8(
    agreement: Agreement, store: TileStore, check_tiles: list[TileRecord], params: ExportParams
) -> tuple[dict, Int8Gate]:
    """The int8 model's agreement with PyTorch fp32, both one's and the other's mIoU (land) on the check tiles'
    labels, and the gate's verdict on them (export.min_int8_agreement, export.max_int8_miou_drop)."""
    labels = np.concatenate([batch.ravel() for batch in tile_batches(store.whole_class_mask, check_tiles, CHECK_BATCH)])
    table = store.class_table()
    scores = headline_drop(labels, agreement.reference_classes, agreement.candidate_classes, table)
    miou = {"pytorch_fp32": scores["reference_miou_land"], "onnxruntime_int8": scores["candidate_miou_land"]}
    shown = {name: "none" if value is None else f"{value:.4f}" for name, value in miou.items()}
    print(
        f"export: onnxruntime int8 vs PyTorch fp32: largest probability difference {agreement.max_abs_diff:.3g}, "
        f"argmax agreement {agreement.argmax_agreement:.4%}; mIoU (land) on the test tiles "
        f"{shown['onnxruntime_int8']} against {shown['pytorch_fp32']}"
    )
    gate = int8_gate(agreement, scores["drop"], params.min_int8_agreement, params.max_int8_miou_drop)
    if not gate.passed:
        instead = "torch (bf16) with the checkpoint" if gate_fallback(CPU) == "torch" else "the fp32 model"
        print(
            f"export: the int8 model failed its gate ({'; '.join(gate.reasons)}); predict (predict.int8 true) "
            f"runs {instead} on this CPU instead"
        )
    return {**miou, "drop": scores["drop"]}, gate


def write_model(path: Path, model: bytes, interface: ModelInterface, weights: str, export_params: dict) -> None:
    path.write_bytes(with_metadata(model, model_metadata(interface, weights, export_params)))


def export_models(
    args: argparse.Namespace, params: ExportParams, interface: ModelInterface, scratch: Path
) -> tuple[dict, list[Path]]:
    """Both models exported with their metadata into `scratch` and checked: the report and the files."""
    trained = load_trained_model(args.checkpoint)
    store = TileStore(args.tiles, args.encoded)
    check_tiles = evenly_spaced(read_index(args.splits / "test.csv"), params.check_tiles)
    calibration_tiles = evenly_spaced(read_index(args.splits / "train.csv"), params.calibration_tiles)
    if not check_tiles:
        raise PipelineError("export check: the test split is empty; set split.ratios.test above 0")
    reference = trained_model_probabilities(trained, torch.device("cpu"), precision="fp32", tta=False)
    export_params = dataclasses.asdict(params)

    fp32, int8 = scratch / FP32_MODEL, scratch / INT8_MODEL
    write_model(fp32, onnx_bytes(trained, params.opset), interface, "fp32", export_params)
    # batches in the exported model's input type (uint8 as they are; other types as float32)
    quantize_int8(fp32, int8, map(model_input, tile_batches(store.whole_image, calibration_tiles, CHECK_BATCH)))
    quantization = {**dataclasses.asdict(QUANTIZATION), "calibration_tiles": len(calibration_tiles)}
    write_model(int8, int8.read_bytes(), interface, "int8", {**export_params, "quantization": quantization})
    candidates = {"fp32": onnxruntime_probabilities(fp32), "int8": onnxruntime_probabilities(int8)}
    check_batches = map(model_input, tile_batches(store.whole_image, check_tiles, CHECK_BATCH))
    agreements = compare_all(reference, candidates, check_batches)
    fp32_agreement, int8_agreement = agreements["fp32"], agreements["int8"]
    check_fp32(fp32_agreement, len(check_tiles), params.min_agreement)
    miou, gate = check_int8(int8_agreement, store, check_tiles, params)
    # the verdict written into the int8 model after the check, so the file carries it
    int8.write_bytes(with_metadata(int8.read_bytes(), {INT8_GATE_KEY: json.dumps(gate.as_dict())}))
    report = {
        "check_tiles": len(check_tiles),
        "calibration_tiles": len(calibration_tiles),
        "onnxruntime_fp32": fp32_agreement.as_dict(),
        "onnxruntime_int8": int8_agreement.as_dict(),
        "miou_land": miou,  # PyTorch fp32's and int8's on the check tiles' labels, and the drop
        "quantization": quantization,
        "int8_gate": gate.as_dict(),  # whether predict runs the int8 model (predict.int8 true), and why not
    }
    return report, [fp32, int8]


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    params = read_section(load_params(args.params), "export", ExportParams)
    interface = read_model_interface(args.checkpoint)
    with scratch_dir(args.output / INT8_MODEL) as scratch:
        report, staged_models = export_models(args, params, interface, scratch)
        for staged in staged_models:
            with atomic_file(args.output / staged.name) as staging:
                staging.write_bytes(staged.read_bytes())
    write_json(args.report, report)
    print(f"export: {args.output / FP32_MODEL}, {args.output / INT8_MODEL}, {args.report}")


if __name__ == "__main__":
    run_stage(main)
