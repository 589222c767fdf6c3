"""Where a training step's and a predict batch's time goes: a torch.profiler breakdown by kind of operator.

    python -m benchmarks.profile_step                      # training step and predict batch, eager
    python -m benchmarks.profile_step --compile            # the same with torch.compile (inductor's CPU backend)
    python -m benchmarks.profile_step --what train --steps 3 --json out.json

The training step is the train stage's (landcover.training.loop.run_epoch over one batch: train.precision resolved on
this device, channels_last, the loss of params.yaml, fused Adam), fed by the train stage's DataLoader over the
benchmark's 256 px tiles, so data loading is in the profile. The predict batch is a batch of `predict.batch_size`
windows through the torch runtime in predict.precision, as predict's sliding window runs them. Each operator's self
time is put in one row of the table by its name (OPERATOR_KINDS); a compiled graph's generated kernels are named
`cpp_fused_<ops>` and go where their ops say. The table lists the share of the profiled step and the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import NUM_CLASSES, count_flops, device_and_sync, params, training_batch_settings
from benchmarks.inputs import SAMPLE_SIZE, tile_store

BATCH_SIZE = 8  # as benchmarks.speed's training measurement

# Each kind of work and the operator names that do it, tried in this order (first match wins). Names are torch's
# aten ops, oneDNN's fused ops, autograd's nodes and inductor's generated kernels (cpp_fused_...).
OPERATOR_KINDS: dict[str, str] = {
    "data loading": r"DataLoader|enumerate\(DataLoader\)|_MultiProcessingDataLoaderIter|dataloader",
    "optimizer": r"adam|Optimizer\.|zero_grad|foreach_",
    "loss": r"log_softmax|nll_loss|cross_entropy|one_hot|scatter|softmax",
    "convolution": r"convolution|conv2d|mkldnn_conv|_convolution_pointwise|mkldnn_rnn|onednn.*conv|addmm|matmul|mm$",
    "batch norm": r"batch_norm|_batch_norm|native_batch_norm|batchnorm",
    "activation": r"relu|threshold|clamp|hardtanh|sigmoid",
    "upsampling": r"upsample|interpolate|grid_sampler",
    "autocast cast": r"_to_copy|to_dtype|aten::to$|_autocast",
    "layout reorder": r"copy_|contiguous|clone|to_dense|to_mkldnn|reorder|_reshape_alias|as_strided|permute|cat",
    "pooling": r"pool",
    "compiled graph, fused pointwise": r"cpp_fused|Torch-Compiled Region|CompiledFunction|triton_",
}
OTHER = "other (pointwise, reductions, allocation, bookkeeping)"


def kind_of(name: str) -> str:
    """The row of OPERATOR_KINDS whose pattern `name` matches (case-insensitive), else OTHER.

    A fused kernel of a compiled graph is named after what it fuses (cpp_fused_native_batch_norm_relu_0): it goes to
    the first kind it names, so batch norm fused with its activation counts as batch norm."""
    lowered = name.lower()
    for kind, pattern in OPERATOR_KINDS.items():
        if re.search(pattern, lowered, flags=re.IGNORECASE):
            return kind
    return OTHER


def breakdown(events: list[tuple[str, float]]) -> dict[str, float]:
    """{kind: self seconds} of (name, self seconds) events: every event counted once, in one kind."""
    totals: dict[str, float] = {}
    for name, seconds in events:
        kind = kind_of(name)
        totals[kind] = totals.get(kind, 0.0) + seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def profiled(function: Callable[[], object]) -> tuple[float, list[tuple[str, float]]]:
    """(wall seconds, [(operator name, self CPU seconds)]) of one call of `function` under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        function()
    wall = time.perf_counter() - start
    return wall, [(event.key, event.self_cpu_time_total / 1e6) for event in profiler.key_averages()]


def training_step(tiles: Path, compiled: bool) -> tuple[Callable[[], object], Callable[[], object], int]:
    """(one training step fed by the train stage's loader, the forward alone for counting, its batch's images)."""
    import torch
    from torch.utils.data import DataLoader

    from landcover.data.augment import training_augmentation
    from landcover.data.datasets import TileDataset
    from landcover.io.params import TrainParams, read_section
    from landcover.model.model import build_model, compile_for_training
    from landcover.training.components import configure_loss, configure_optimizer
    from landcover.training.loop import run_epoch

    device, _ = device_and_sync()
    encoder = params()["model"]["encoder"]
    train = read_section(params(), "train", TrainParams)
    augment = params()["augment"]
    store = tile_store(tiles)
    dataset = TileDataset(
        store.index()[:BATCH_SIZE],
        store,
        training_augmentation(SAMPLE_SIZE, augment["scale_min"], augment["colour_jitter"]),
    )
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model(encoder, NUM_CLASSES).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = configure_optimizer(model, train, device)
    settings = training_batch_settings(train, device)
    loss_fn = configure_loss(train.loss)
    network = compile_for_training(model) if compiled else model

    def step() -> object:
        return run_epoch(network, loader, settings, loss_fn, NUM_CLASSES, "profile", optimizer, progress=False)

    images = torch.zeros(BATCH_SIZE, 3, SAMPLE_SIZE, SAMPLE_SIZE, device=device)
    return step, lambda: model.eval()(images), BATCH_SIZE


def predict_batch(compiled: bool) -> tuple[Callable[[], object], Callable[[], object], int]:
    """(one batch of predict's windows through the torch runtime, the same forward for counting, windows)."""
    import torch

    from benchmarks.common import random_model
    from landcover.io.params import PredictParams, read_section
    from landcover.model.devices import autocast, resolve_precision
    from landcover.model.model import compile_for_inference

    device, _ = device_and_sync()
    predict = read_section(params(), "predict", PredictParams)
    precision = resolve_precision(predict.precision, device, "predict.precision")
    model = random_model(params()["model"]["encoder"], device)
    network = compile_for_inference(model) if compiled else model
    windows = torch.rand(predict.batch_size, 3, predict.window, predict.window, device=device).contiguous(
        memory_format=torch.channels_last
    )

    def batch() -> object:
        with torch.inference_mode(), autocast(device, precision):
            return network(windows).float().softmax(1)

    return batch, lambda: model(windows), predict.batch_size


def profile_work(what: str, tiles: Path, compiled: bool, steps: int) -> dict:
    """Warm up (compiling where asked, timed), then profile `steps` calls; the breakdown of the fastest."""
    import torch

    if compiled:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True  # each generated kernel is a profiler event of its own
    run, forward, images = training_step(tiles, compiled) if what == "train" else predict_batch(compiled)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    run()
    profiles = [profiled(run) for _ in range(steps)]
    wall, events = min(profiles, key=lambda profile: profile[0])
    with torch.no_grad():
        flops = count_flops(forward) * (3 if what == "train" else 1)  # backward: twice the forward's work
    return {
        "what": what,
        "compiled": compiled,
        "first_call_seconds": first,
        "seconds": wall,
        "images": images,
        "gflops_per_second": flops / wall / 1e9,
        "self_seconds_by_kind": breakdown(events),
    }


def table(result: dict) -> str:
    """A Markdown table of one profile: each kind's milliseconds and share of the profiled call."""
    kinds = result["self_seconds_by_kind"]
    total = sum(kinds.values())
    heading = (
        f"{result['what']}{' (compiled)' if result['compiled'] else ''}: {result['seconds']:.2f} s per call "
        f"({result['images']} images, {result['gflops_per_second']:.0f} GFLOP/s); "
        f"first call {result['first_call_seconds']:.1f} s"
    )
    rows = [f"| {kind} | {seconds * 1000:.0f} | {seconds / total:.0%} |" for kind, seconds in kinds.items()]
    return "\n".join([heading, "", "| operators | ms | share |", "|---|---:|---:|", *rows])


def main(argv: list[str] | None = None) -> None:
    from benchmarks.inputs import prepare_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=("train", "predict", "both"), default="both")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (inductor's CPU backend)")
    parser.add_argument("--steps", type=int, default=3, help="profiled calls after warm-up; the fastest is shown (3)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/landcover-bench"), help="benchmark inputs")
    parser.add_argument("--json", type=Path, help="also write the breakdowns here")
    args = parser.parse_args(argv)
    _, tiles = prepare_inputs(args.cache, 1)
    results = [
        profile_work(what, tiles, args.compile, args.steps)
        for what in (("train", "predict") if args.what == "both" else (args.what,))
    ]
    for result in results:
        print(table(result), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
