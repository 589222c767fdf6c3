"""The trained model as a portable file: ONNX export, its check against PyTorch, int8 quantization.

The exported graph is self-contained: it takes uint8 RGB batches as predict hands them to every
runtime (N, H, W, 3; H and W multiples of 16, batch, height and width dynamic), normalises them
with the checkpoint's mean and std, runs DeepLabV3+ and returns softmax probabilities (N, C, H, W).
So a user of the file needs no normalisation code, and every runtime sees the same graph.

Exports are byte-identical across runs and processes (the legacy TorchScript-based exporter names
nodes by their place in the module tree; a test checks it), so DVC's lock does not change when
the pipeline is reproduced. The int8 model is calibrated on a fixed, evenly spaced subset of the
training tiles (MinMax calibration: the same tiles give the same bytes).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stages.core.data.tilestore import TileRecord, TileStore, crop, group_by_image
from stages.core.io.errors import PipelineError
from stages.core.io.params import OUTPUT_STRIDE_MULTIPLE
from stages.core.model.checkpoint import TrainedModel
from stages.core.model.model import normalise

INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
OPSET = 17


class ProbabilityModel(nn.Module):
    """uint8 NHWC RGB -> float32 NCHW softmax probabilities: normalisation and softmax inside the graph."""

    def __init__(self, trained: TrainedModel) -> None:
        super().__init__()
        self.model = trained.model
        self.mean, self.std = trained.mean, trained.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalise(images, self.mean, self.std)).softmax(dim=1)


def onnx_bytes(trained: TrainedModel, opset: int = OPSET) -> bytes:
    """The ONNX serialisation of a trained model (CPU, fp32), with dynamic batch, height and width."""
    wrapper = ProbabilityModel(trained).eval().cpu()
    example = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript-based exporter needs only the `onnx` package (the dynamo
        # exporter also needs onnxscript) and writes the same bytes every time.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            dynamic_axes={
                INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
                OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            },
        )
    return buffer.getvalue()


def evenly_spaced(records: list[TileRecord], count: int) -> list[TileRecord]:
    """At most `count` records spread over the list (all of them if it is shorter): a fixed subset."""
    if len(records) <= count:
        return list(records)
    return [records[round(i * (len(records) - 1) / (count - 1))] if count > 1 else records[0] for i in range(count)]


def tile_batches(store: TileStore, records: list[TileRecord], batch_size: int) -> Iterator[np.ndarray]:
    """uint8 (N, side, side, 3) batches of the tiles `records`, each image decoded once; tiles of one size,
    cut to the largest multiple of 16 (the model's input rule) where the tile size is none."""
    batch: list[np.ndarray] = []
    for tiles in group_by_image(records).values():
        whole = store.whole_image(tiles[0])
        for record in tiles:
            side = record.size // OUTPUT_STRIDE_MULTIPLE * OUTPUT_STRIDE_MULTIPLE
            batch.append(crop(whole, record)[:side, :side])
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
    if batch:
        yield np.stack(batch)


@dataclass(frozen=True)
class Agreement:
    """How closely one runtime's probabilities follow another's on the same tiles."""

    max_abs_diff: float  # largest absolute difference of any class probability at any pixel
    argmax_agreement: float  # fraction of pixels whose most probable class is the same
    pixels: int

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement, "pixels": self.pixels}


def compare(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[np.ndarray],
) -> Agreement:
    """Run both probability functions on every batch; the largest difference and the argmax agreement."""
    largest, same, pixels = 0.0, 0, 0
    for batch in batches:
        tensor = torch.from_numpy(batch)
        expected, actual = reference(tensor).float().cpu(), candidate(tensor).float().cpu()
        largest = max(largest, float((expected - actual).abs().max()))
        same += int((expected.argmax(dim=1) == actual.argmax(dim=1)).sum())
        pixels += expected.shape[0] * expected.shape[2] * expected.shape[3]
    if not pixels:
        raise PipelineError("export check: no tiles to compare on (the test split is empty)")
    return Agreement(largest, same / pixels, pixels)


def require_agreement(agreement: Agreement, minimum: float, what: str) -> None:
    if agreement.argmax_agreement < minimum:
        raise PipelineError(
            f"export check failed: {what} agrees with PyTorch on {agreement.argmax_agreement:.4%} of "
            f"{agreement.pixels} test pixels, below the {minimum:.2%} required (largest probability "
            f"difference {agreement.max_abs_diff:.3g}); nothing was written"
        )


def quantize_int8(fp32_model: Path, output: Path, calibration: Iterator[np.ndarray]) -> None:
    """Post-training static int8 quantization (onnxruntime): QDQ format, per-channel int8 weights,
    uint8 activations with MinMax ranges from the calibration batches. Only convolutions are
    quantized (nearly all of the work); resize, concatenation and softmax stay fp32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX shape inference and graph optimisation (batch norms folded into convolutions) first,
        # as onnxruntime recommends; symbolic shape inference cannot follow the dynamic sides.
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],
        )
