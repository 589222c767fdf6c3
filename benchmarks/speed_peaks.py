"""The machine's throughput ceilings for benchmarks.speed: what fraction of them training and inference reach."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from benchmarks.common import device_and_sync


def measure_peaks(config: dict) -> dict:
    """The machine's throughput ceilings, GFLOP/s: a large matrix multiply and a large 3x3 convolution.

    Both in bf16 and fp32. The convolution runs through oneDNN as the network's layers do; the fp32
    matrix multiply goes through MKL, which can understate the fp32 ceiling on non-Intel CPUs.
    """
    import torch
    import torch.nn.functional as F

    from landcover.model.devices import bf16_supported

    device, sync = device_and_sync()
    side = 8192 if device.type == "cuda" else 4096
    repeats = 20 if device.type == "cuda" else 4
    # Without native bf16 a CPU emulates it at a few GFLOP/s: minutes at the full size, for a rate no stage runs at
    # (training and predict resolve to fp32 there), so a quarter of the matrix side and one image measure it.
    native = bf16_supported(device)
    sizes = {"bf16": (side if native else side // 4, 8 if native else 1), "fp32": (side, 8)}

    def rate(operation: Callable[[], object], flops: int) -> float:
        for _ in range(2):
            operation()
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            operation()
        sync()
        return flops * repeats / (time.perf_counter() - start) / 1e9

    result = {}
    with torch.no_grad():
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            matrix_side, images_in_batch = sizes[name]
            a, b = (torch.randn(matrix_side, matrix_side, device=device, dtype=dtype) for _ in range(2))
            result[f"{name}_matmul_gflops"] = rate(partial(torch.matmul, a, b), 2 * matrix_side**3)
            images = torch.randn(images_in_batch, 256, 64, 64, device=device, dtype=dtype).contiguous(
                memory_format=torch.channels_last
            )
            weights = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(
                memory_format=torch.channels_last
            )
            result[f"{name}_conv_gflops"] = rate(
                partial(F.conv2d, images, weights, padding=1), 2 * images_in_batch * 256 * 256 * 9 * 64 * 64
            )
    return result
