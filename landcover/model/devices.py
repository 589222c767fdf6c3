"""Where a model runs and in which precision: the device choice, native bf16, the precision a param resolves
to, autocast, and CUDA's deterministic mode."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch

from landcover.io.errors import PipelineError
from landcover.io.params import choose

# CPU features with native bf16 arithmetic, as torch.cpu.get_capabilities() names them. Without
# one, bf16 is emulated and slower than fp32. (ARM's bf16 is left out: not measured here.)
CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16")

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# cuBLAS needs this workspace setting for deterministic results; it is read when cuBLAS starts.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def _device_if_present(name: str, present: Callable[[], bool]) -> Callable[[], torch.device | None]:
    return lambda: torch.device(name) if present() else None


def _first_present() -> torch.device | None:
    """auto: the first device that is here, in PRESENT's order."""
    return next(torch.device(name) for name, present in PRESENT.items() if present())


# The devices train.device names, in the order auto tries them, each with its check of whether it is here (asked
# when a device is chosen, not at import: tests patch torch's checks).
PRESENT: dict[str, Callable[[], bool]] = {
    "cuda": lambda: torch.cuda.is_available(),
    "mps": lambda: torch.backends.mps.is_available(),
    "cpu": lambda: True,
}
# train.device: each name's device where it is here, else None.
DEVICES: dict[str, Callable[[], torch.device | None]] = {
    "auto": _first_present,
    **{name: _device_if_present(name, present) for name, present in PRESENT.items()},
}


def choose_device(requested: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device that is absent is an error."""
    device = choose("train.device", requested, DEVICES)()
    if device is None:
        here = [name for name, present in PRESENT.items() if present()]
        raise PipelineError(f"params: train.device {requested!r} is not available here (available: {', '.join(here)})")
    return device


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off only with native bf16 units: AVX512-BF16/AMX CPUs, Ampere+ GPUs."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)
    return False


def _auto_precision(device: torch.device, key: str) -> str:
    """bf16 where the hardware has it natively, else fp16 on CUDA (training then scales its loss with a
    GradScaler), else fp32."""
    if bf16_supported(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def _fp16(device: torch.device, key: str) -> str:
    """fp16 on CUDA only: CPU autocast in fp16 is emulated, slower than fp32, and has no loss scaler here."""
    if device.type != "cuda":
        raise PipelineError(
            f"params: {key} fp16 needs a CUDA device, this run is on {device.type}; use auto, bf16 or fp32"
        )
    return "fp16"


# train.precision and predict.precision: each name's resolution on a device (the param's key names it in errors).
# An explicit bf16 is used as asked, native or not.
PRECISIONS: dict[str, Callable[[torch.device, str], str]] = {
    "auto": _auto_precision,
    "bf16": lambda device, key: "bf16",
    "fp16": _fp16,
    "fp32": lambda device, key: "fp32",
}


def resolve_precision(requested: str, device: torch.device, key: str) -> str:
    """`bf16`, `fp16` or `fp32`: what `requested` (a name in PRECISIONS, the param `key`) means on `device`; fp16
    off CUDA is refused with a one-line error that says what to use instead."""
    return choose(key, requested, PRECISIONS)(device, key)


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
