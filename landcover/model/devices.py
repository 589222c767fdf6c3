"""Where a model runs and in which precision: the device choice, native bf16, the precision a param resolves
to, autocast, and CUDA's deterministic mode."""

from __future__ import annotations

import contextlib
import os

import torch

from landcover.io.errors import PipelineError

# CPU features with native bf16 arithmetic, as torch.cpu.get_capabilities() names them. Without
# one, bf16 is emulated and slower than fp32. (ARM's bf16 is left out: not measured here.)
CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16")

# The values of train.precision and predict.precision.
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# cuBLAS needs this workspace setting for deterministic results; it is read when cuBLAS starts.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def choose_device(requested: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device that is absent is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if requested == "auto":
        return torch.device(next(name for name, present in available.items() if present))
    if not available.get(requested, False):
        raise PipelineError(
            f"params: train.device {requested!r} is not available here "
            f"(available: {', '.join(name for name, ok in available.items() if ok)})"
        )
    return torch.device(requested)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off only with native bf16 units: AVX512-BF16/AMX CPUs, Ampere+ GPUs."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)
    return False


def resolve_precision(requested: str, device: torch.device, key: str) -> str:
    """`bf16`, `fp16` or `fp32`: what `requested` (a value of PRECISIONS, the param `key`) means on `device`.

    `auto` is bf16 where the hardware has it natively, else fp16 on CUDA (training then scales its
    loss with a GradScaler), else fp32. An explicit `bf16` is used as asked, native or not. fp16
    is refused off CUDA: CPU autocast in fp16 is emulated, slower than fp32, and has no loss
    scaler here; the one-line error says what to use instead.
    """
    if requested == "auto":
        if bf16_supported(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise PipelineError(
            f"params: {key} fp16 needs a CUDA device, this run is on {device.type}; use auto, bf16 or fp32"
        )
    return requested


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to `precision` (bf16 or fp16) on `device`; fp32 runs as it is."""
    if precision not in ("fp32", *AUTOCAST_DTYPES):  # e.g. a bool: refuse, never fall back to fp32
        raise ValueError(f"autocast: precision must be bf16, fp16 or fp32 (resolved), got {precision!r}")
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def make_deterministic() -> None:
    """Deterministic algorithms where PyTorch has them, cuDNN without autotuning, cuBLAS's deterministic workspace.

    warn_only: some ops DeepLabV3+ needs have no deterministic CUDA kernel (the backward passes of
    bilinear interpolation and adaptive average pooling, NLLLoss's forward); they warn instead of
    stopping training, and stay nondeterministic. The workspace variable must be set before
    cuBLAS starts, so call this before the first CUDA operation (the train stage calls it first).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
