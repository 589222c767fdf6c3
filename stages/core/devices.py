"""Where a model runs and in which precision: the device choice, native bf16, autocast."""
from __future__ import annotations

import contextlib

import torch

from stages.core.errors import PipelineError

# CPU features with native bf16 arithmetic, as torch.cpu.get_capabilities() names them. Without
# one, bf16 is emulated and slower than fp32. (ARM's bf16 is left out: not measured here.)
CPU_BF16_FEATURES = ("avx512_bf16", "amx_bf16")


def choose_device(requested: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device that is absent is an error."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if requested == "auto":
        return torch.device(next(name for name, present in available.items() if present))
    if not available.get(requested, False):
        raise PipelineError(f"params: train.device {requested!r} is not available here "
                            f"(available: {', '.join(name for name, ok in available.items() if ok)})")
    return torch.device(requested)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off only with native bf16 units: AVX512-BF16/AMX CPUs, Ampere+ GPUs."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(feature, False) for feature in CPU_BF16_FEATURES)
    return False


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
