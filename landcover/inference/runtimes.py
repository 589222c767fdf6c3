"""Inference runtimes: the model a prediction runs as a ProbabilityFn, the same contract for every runtime.

`predict.runtime` picks one: `torch` (the checkpoint, eager or compiled: landcover.inference.blending),
`onnxruntime` (the export stage's model.onnx, or model.int8.onnx with `predict.int8`; part of the
core install; on the GPU through its CUDA provider where onnxruntime-gpu is installed), `openvino`
(the same files through OpenVINO on the CPU; optional: `make install-runtime`), or `auto`: torch on
a CUDA GPU, onnxruntime everywhere else (torch where a checkpoint has no ONNX model beside it).

`predict.int8` true runs the export stage's int8 model only where its metadata says it passed the
export's int8 gate. Where it failed, a fixed rule on the CPU's features (never a timing) picks what
runs instead: with auto on a CPU, torch where the CPU has native bf16 (bf16_supported), else
onnxruntime with the fp32 model; with onnxruntime or openvino, that runtime with the fp32 model.
`required` stops instead, naming the gate's reasons; false is the fp32 model.
Blending and TTA are the same for all: the sliding window gets one probability function. An ONNX
model run next to a checkpoint must have been exported from it (the sha256 in its metadata), so
classes and weights always come from one model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from landcover.inference.blending import ProbabilityFn
from landcover.inference.export import INPUT_NAME, read_int8_gate, read_onnx_interface
from landcover.inference.probabilities import averaged_over_views, dihedral_view, trained_model_probabilities
from landcover.io.errors import PipelineError
from landcover.io.params import INT8_REQUIRED, PredictParams, choose
from landcover.model.checkpoint import ModelInterface, checkpoint_sha256, load_trained_model, read_model_interface
from landcover.model.devices import PRECISIONS, bf16_supported

FP32_MODEL, INT8_MODEL = "model.onnx", "model.int8.onnx"
CPU = torch.device("cpu")

# (uint8 NHWC batch as numpy) -> float32 NCHW probabilities as numpy
ArrayFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Runtime:
    """How a prediction runs: predict.runtime with auto resolved, the file it runs, what that model takes
    and gives, and where."""

    name: str  # torch | onnxruntime | openvino
    model: Path  # the checkpoint for torch, the ONNX file for the others
    interface: ModelInterface  # classes, colours, normalisation: the checkpoint's, or the ONNX file's metadata
    device: torch.device  # torch's device; for onnxruntime cuda on its CUDA provider, else cpu; openvino: cpu
    threads: int | None  # intra-op threads: this process's share of the cores; None: the runtime's default
    auto: bool = False  # chosen by predict.runtime auto
    why: str = ""  # why the int8 model predict.int8 asks for does not run, where it does not


def exported_path(export_dir: Path, int8: bool) -> Path:
    """Where the export stage writes the fp32 or int8 model in `export_dir`."""
    return Path(export_dir) / (INT8_MODEL if int8 else FP32_MODEL)


def exported_model(export_dir: Path, int8: bool) -> Path:
    path = exported_path(export_dir, int8)
    if not path.is_file():
        raise PipelineError(f"{path}: exported model not found; run the export stage (dvc repro export)")
    return path


def onnxruntime_on_gpu(device: torch.device) -> bool:
    """Whether onnxruntime can run on `device`: a CUDA device, and onnxruntime's CUDA provider installed."""
    if device.type != "cuda":
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def require_same_checkpoint(onnx: Path, interface: ModelInterface, checkpoint: Path) -> None:
    """Refuse an ONNX model (whose metadata is `interface`) that was not exported from `checkpoint`."""
    actual = checkpoint_sha256(checkpoint)
    if interface.checkpoint_sha256 != actual:
        raise PipelineError(
            f"{onnx}: exported from another checkpoint than {checkpoint} (sha256 "
            f"{interface.checkpoint_sha256[:12]}... in its metadata, {actual[:12]}... for the checkpoint); "
            "export this checkpoint (dvc repro export) or give the checkpoint it came from"
        )


def with_tta(run: ArrayFn, tta: bool) -> ProbabilityFn:
    """An array function as a ProbabilityFn; with `tta`, averaged over the 8 flips/90-degree rotations."""

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        nchw = batch.permute(0, 3, 1, 2)

        def view_probabilities(view: tuple[int, bool]) -> torch.Tensor:
            viewed = np.ascontiguousarray(dihedral_view(nchw, view).permute(0, 2, 3, 1).numpy())
            return torch.from_numpy(run(viewed))

        return averaged_over_views(view_probabilities, tta)

    return probabilities


def onnxruntime_providers(device: torch.device) -> list:
    """The CUDA provider on `device`'s GPU (the CPU's for what it cannot run) for a CUDA device, else the CPU's."""
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def onnxruntime_session(path: Path, threads: int | None = None, device: torch.device = CPU):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=onnxruntime_providers(device))
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise PipelineError(f"{path}: onnxruntime cannot load it ({' '.join(str(error).split())[:200]})") from None


def onnxruntime_probabilities(
    path: Path, tta: bool = False, threads: int | None = None, device: torch.device = CPU
) -> ProbabilityFn:
    session = onnxruntime_session(path, threads, device)
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


def openvino_probabilities(path: Path, tta: bool = False, threads: int | None = None) -> ProbabilityFn:
    ov = require_openvino()
    core = ov.Core()
    # Latency hint: one request at a time, all cores (or this process's share) on it (windows come in
    # batches already).
    config: dict = {"PERFORMANCE_HINT": "LATENCY"} | ({"INFERENCE_NUM_THREADS": threads} if threads else {})
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: batch})[0])

    return with_tta(run, tta)


def _torch_probabilities(runtime: Runtime, params: PredictParams) -> ProbabilityFn:
    """The checkpoint's model (predict.precision and predict.compile apply)."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    trained = load_trained_model(runtime.model)
    return trained_model_probabilities(trained, runtime.device, params.precision, params.tta, compile=params.compile)


# --- predict.int8: the int8 model where it passed its gate -------------------------------------------


@dataclass(frozen=True)
class Int8Choice:
    """Whether the export stage's int8 model runs, as predict.int8 and the model's gate say; where predict.int8
    asks for it and its gate failed, why not."""

    int8: bool
    failed_gate: str = ""  # "model.int8.onnx failed its int8 gate (reasons)", where it did


def int8_choice(export_dir: Path, setting: bool | str) -> Int8Choice:
    """predict.int8 for the export stage's models in `export_dir`: false the fp32 model; true the int8 model where
    it passed its gate (or has no int8 model to judge: the runtimes say it is missing), else the fp32 model;
    required the int8 model, or PipelineError with the gate's reasons."""
    path = exported_path(export_dir, True)
    if setting is False or not path.is_file():
        return Int8Choice(setting is not False)
    gate = read_int8_gate(path)
    if gate.passed:
        return Int8Choice(True)
    reasons = "; ".join(gate.reasons)
    if setting == INT8_REQUIRED:
        raise PipelineError(
            f"params: predict.int8 required, but {path} failed its int8 gate at export ({reasons}); set predict.int8 "
            "true to run the fp32 model instead"
        )
    return Int8Choice(False, f"{path.name} failed its int8 gate ({reasons})")


def gate_fallback(device: torch.device) -> str:
    """The runtime predict.runtime auto runs on a CPU where the int8 model failed its gate: torch where the CPU has
    native bf16 (bf16 autocast, as predict.precision auto chooses), else onnxruntime with the fp32 model. A fixed
    rule on the CPU's features, never a timing, so the same machine always runs the same model."""
    return "torch" if bf16_supported(device) else "onnxruntime"


# --- predict.runtime: how each runtime is chosen, runs and is described ---------------------------------


@dataclass(frozen=True)
class RuntimeRequest:
    """What a runtime is chosen from: the predict params, the device, the checkpoint and the ONNX model given (either
    may be None), the export stage's folder (its ONNX models) and this process's share of the cores."""

    params: PredictParams
    device: torch.device
    checkpoint: Path | None
    model: Path | None
    export_dir: Path
    threads: int | None

    @cached_property
    def int8(self) -> Int8Choice:
        """predict.int8 for the export stage's models (asked only where they run: torch ignores it)."""
        return int8_choice(self.export_dir, self.params.int8)

    def onnx(self) -> Path | None:
        """The ONNX model there is to run: the one given, else the export stage's if it exists."""
        if self.model is not None:
            return self.model
        exported = exported_path(self.export_dir, self.int8.int8)
        return exported if exported.is_file() else None

    def fp32_why(self) -> str:
        """Why the export stage's fp32 model runs where predict.int8 asked for the int8 one ("" where it did not)."""
        failed = self.int8.failed_gate if self.model is None else ""
        return f"{failed}: the fp32 model runs instead" if failed else ""


@dataclass(frozen=True)
class RuntimeKind:
    """A predict.runtime: the Runtime it chooses for a request (named as given), the probability function that
    Runtime runs, and how run_label describes it."""

    make: Callable[[str, RuntimeRequest], Runtime]
    probabilities: Callable[[Runtime, PredictParams], ProbabilityFn]
    describe: Callable[[Runtime, PredictParams], str]


def _torch(name: str, request: RuntimeRequest) -> Runtime:
    checkpoint, model = request.checkpoint, request.model
    if checkpoint is None:
        others = ", ".join(other for other in RUNTIMES if other != name)
        raise PipelineError(
            f"{model}: predict.runtime {name} runs a checkpoint, not an ONNX model; give --checkpoint, "
            f"or set predict.runtime to {others}"
        )
    interface = read_model_interface(checkpoint)
    if model is not None:
        require_same_checkpoint(model, read_onnx_interface(model), checkpoint)
    return Runtime(name, checkpoint, interface, request.device, request.threads)


def _torch_description(runtime: Runtime, params: PredictParams) -> str:
    return f"{runtime.name}, {params.precision}" + (", compiled" if params.compile else "")


def _onnx_model(request: RuntimeRequest) -> tuple[Path, ModelInterface]:
    """The ONNX model an ONNX runtime runs (the export stage's without one given) and its metadata, checked
    against the checkpoint where one is given."""
    onnx = request.model if request.model is not None else exported_model(request.export_dir, request.int8.int8)
    interface = read_onnx_interface(onnx)
    if request.checkpoint is not None:
        require_same_checkpoint(onnx, interface, request.checkpoint)
    return onnx, interface


def _onnxruntime(name: str, request: RuntimeRequest) -> Runtime:
    onnx, interface = _onnx_model(request)
    device = request.device if onnxruntime_on_gpu(request.device) else CPU
    return Runtime(name, onnx, interface, device, request.threads, why=request.fp32_why())


def _openvino(name: str, request: RuntimeRequest) -> Runtime:
    require_openvino()  # before looking for the model: the missing package is the first thing to fix
    onnx, interface = _onnx_model(request)
    return Runtime(name, onnx, interface, CPU, request.threads, why=request.fp32_why())


def _auto(name: str, request: RuntimeRequest) -> Runtime:
    """torch for a checkpoint on a CUDA GPU, or for a checkpoint without an ONNX model to run; else onnxruntime
    (int8 with predict.int8), which is faster than torch on a CPU. Where the int8 model failed its gate, the
    gate's fallback (gate_fallback)."""
    checkpoint_only = request.checkpoint is not None and (request.device.type == "cuda" or request.onnx() is None)
    failed = "" if checkpoint_only or request.model is not None else request.int8.failed_gate
    fallback = gate_fallback(request.device) if failed and request.checkpoint is not None else "onnxruntime"
    resolved = "torch" if checkpoint_only else fallback
    runtime = RUNTIMES[resolved].make(resolved, request)
    if failed and resolved == "torch":
        runtime = dataclasses.replace(runtime, why=f"{failed}: torch runs instead, this CPU having native bf16")
    return dataclasses.replace(runtime, auto=True)


# auto's Runtime is named for the runtime it resolved to: that one runs and describes it.
def _resolved_probabilities(runtime: Runtime, params: PredictParams) -> ProbabilityFn:
    return RUNTIMES[runtime.name].probabilities(runtime, params)


def _resolved_description(runtime: Runtime, params: PredictParams) -> str:
    return RUNTIMES[runtime.name].describe(runtime, params)


def _model_file(runtime: Runtime, params: PredictParams) -> str:
    return f"{runtime.name}, {runtime.model.name}"


# predict.runtime: each name's way of choosing, running and describing the runtime (auto: the one it resolves to)
RUNTIMES: dict[str, RuntimeKind] = {
    "auto": RuntimeKind(_auto, _resolved_probabilities, _resolved_description),
    "torch": RuntimeKind(_torch, _torch_probabilities, _torch_description),
    "onnxruntime": RuntimeKind(
        _onnxruntime,
        lambda runtime, params: onnxruntime_probabilities(runtime.model, params.tta, runtime.threads, runtime.device),
        _model_file,
    ),
    "openvino": RuntimeKind(
        _openvino,
        lambda runtime, params: openvino_probabilities(runtime.model, params.tta, runtime.threads),
        _model_file,
    ),
}


def check_predict_options(params: PredictParams) -> None:
    """Refuse, as the params are read and before a model is looked for, a predict.runtime or predict.precision
    that names nothing in its registry."""
    choose("predict.runtime", params.runtime, RUNTIMES)
    choose("predict.precision", params.precision, PRECISIONS)


def choose_runtime(
    params: PredictParams,
    device: torch.device,
    checkpoint: Path | None,
    model: Path | None,
    export_dir: Path,
    threads: int | None = None,
) -> Runtime:
    """The runtime for `params` on `device`, given a checkpoint, an ONNX model, or both (then they must
    match); without an ONNX model the ONNX runtimes run the export stage's in `export_dir`."""
    request = RuntimeRequest(params, device, checkpoint, model, export_dir, threads)
    return choose("predict.runtime", params.runtime, RUNTIMES).make(params.runtime, request)


def runtime_probabilities(runtime: Runtime, params: PredictParams) -> ProbabilityFn:
    """The ProbabilityFn of a chosen runtime: the checkpoint's model for torch (predict.precision and
    predict.compile apply); the ONNX file for the others, and no PyTorch model is built."""
    return choose("predict.runtime", runtime.name, RUNTIMES).probabilities(runtime, params)


def run_label(params: PredictParams, runtime: Runtime) -> str:
    """How a prediction runs, for its summary line: windows, TTA, runtime, the model file and the device."""
    how = choose("predict.runtime", runtime.name, RUNTIMES).describe(runtime, params)
    threads = f", {runtime.threads} threads" if runtime.threads else ""
    why = f"; {runtime.why}" if runtime.why else ""
    return (
        f"window {params.window}, overlap {params.overlap}, tta {'on' if params.tta else 'off'}, "
        f"{how}{' (predict.runtime auto)' if runtime.auto else ''}, {runtime.device}{threads}{why}"
    )
