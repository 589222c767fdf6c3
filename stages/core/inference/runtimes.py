"""Inference runtimes: the exported ONNX model as a ProbabilityFn, the same contract as PyTorch's.

`predict.runtime` picks one: `torch` (the checkpoint, eager or compiled: stages.core.inference.blending),
`onnxruntime` (the export stage's model.onnx, or model.int8.onnx with `predict.int8`; part of the
core install) or `openvino` (the same files through OpenVINO; optional: `make install-runtime`).
Blending and TTA are the same for all: the sliding window gets one probability function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stages.core.inference.blending import ProbabilityFn
from stages.core.inference.export import INPUT_NAME
from stages.core.inference.probabilities import averaged_over_views, dihedral_view, trained_model_probabilities
from stages.core.io.errors import PipelineError
from stages.core.io.params import PredictParams
from stages.core.model.checkpoint import load_trained_model

FP32_MODEL, INT8_MODEL = "model.onnx", "model.int8.onnx"

# (uint8 NHWC batch as numpy) -> float32 NCHW probabilities as numpy
ArrayFn = Callable[[np.ndarray], np.ndarray]


def exported_model(export_dir: Path, int8: bool) -> Path:
    path = Path(export_dir) / (INT8_MODEL if int8 else FP32_MODEL)
    if not path.is_file():
        raise PipelineError(f"{path}: exported model not found; run the export stage (dvc repro export)")
    return path


def with_tta(run: ArrayFn, tta: bool) -> ProbabilityFn:
    """An array function as a ProbabilityFn; with `tta`, averaged over the 8 flips/90-degree rotations."""

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        nchw = batch.permute(0, 3, 1, 2)

        def view_probabilities(view: tuple[int, bool]) -> torch.Tensor:
            viewed = np.ascontiguousarray(dihedral_view(nchw, view).permute(0, 2, 3, 1).numpy())
            return torch.from_numpy(run(viewed))

        return averaged_over_views(view_probabilities, tta)

    return probabilities


def onnxruntime_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise PipelineError(f"{path}: onnxruntime cannot load it ({' '.join(str(error).split())[:200]})") from None


def onnxruntime_probabilities(path: Path, tta: bool = False, threads: int | None = None) -> ProbabilityFn:
    session = onnxruntime_session(path, threads)
    return with_tta(lambda batch: session.run(None, {INPUT_NAME: batch})[0], tta)


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise PipelineError(
            "params: predict.runtime openvino needs the openvino package, an optional dependency: "
            "install it with `make install-runtime`"
        ) from None
    return openvino


def openvino_probabilities(path: Path, tta: bool = False) -> ProbabilityFn:
    ov = require_openvino()
    core = ov.Core()
    # Latency hint: one request at a time, all cores on it (windows come in batches already).
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: batch})[0])

    return with_tta(run, tta)


def runtime_probabilities(
    params: PredictParams, checkpoint: Path, device: torch.device, export_dir: Path
) -> ProbabilityFn:
    """The ProbabilityFn `predict.runtime` asks for: the checkpoint's model for torch; for the other
    runtimes the export stage's ONNX model, on the CPU, and no PyTorch model is built."""
    if params.runtime == "torch":
        trained = load_trained_model(checkpoint)
        return trained_model_probabilities(trained, device, params.precision, params.tta, compile=params.compile)
    if params.runtime == "openvino":
        require_openvino()  # before looking for the model: the missing package is the first thing to fix
        return openvino_probabilities(exported_model(export_dir, params.int8), params.tta)
    return onnxruntime_probabilities(exported_model(export_dir, params.int8), params.tta)


def runtime_label(params: PredictParams) -> str:
    if params.runtime == "torch":
        return f"torch, {params.precision}" + (", compiled" if params.compile else "")
    return f"{params.runtime}, {'int8' if params.int8 else 'fp32'}"


def run_label(params: PredictParams, device: torch.device) -> str:
    """How a prediction runs, for its summary line: windows, TTA, runtime and device."""
    where = device if params.runtime == "torch" else "cpu"
    return (
        f"window {params.window}, overlap {params.overlap}, tta {'on' if params.tta else 'off'}, "
        f"{runtime_label(params)}, {where}"
    )
