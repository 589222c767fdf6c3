"""The GPU section of `make bench` (benchmarks.speed calls run_section and report): it runs wherever CUDA is
present and says that it was skipped elsewhere.

  training    images/s of a training step at 512 px tiles, batch 16 per GPU (DeepLabV3+ with
              params.yaml's encoder, loss, precision and channels_last, fused Adam; synthetic
              data: speed does not depend on the pixels), and its fraction of the GPU's measured bf16
              matmul peak (benchmarks.speed_peaks, run on the GPU);
  N GPUs      where there are several: the same step under DistributedDataParallel, one process per
              GPU started by torchrun, images/s over all GPUs and the scaling efficiency
              (N-GPU rate / (N x 1-GPU rate));
  inference   seconds per 2448 px image with predict's settings (params.yaml), blending on the GPU as
              predict does and, for comparison, copying each batch's probabilities to the host and
              blending there with numpy (benchmarks.blending's host_classes).

Each measurement runs in a fresh process (`python -m benchmarks.gpu --measure NAME CONFIG`; the N-GPU one
under torchrun, rank 0 reporting). torch is imported only inside the measurements, as in benchmarks.speed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import numpy as np

from benchmarks.common import (
    IMAGE_SIZE,
    NUM_CLASSES,
    benchmark_parser,
    count_flops,
    markdown_table,
    params,
    predict_probabilities,
    random_model,
    run_for_json,
    sync_of,
    time_alternating,
    training_batch_settings,
)

TILE = 512  # training tile side
BATCH = 16  # training tiles per step and GPU
MODES = {"quick": {"warmup": 3, "steps": 10, "images": 2}, "full": {"warmup": 5, "steps": 30, "images": 5}}


# --- Measurements, each in its own process ---------------------------------------------------------------


def measure_training(config: dict) -> dict:
    """Seconds per training step on one GPU, or, under torchrun, on every GPU at once (DDP; rank 0 reports)."""
    import torch
    import torch.distributed as dist

    from landcover.io.params import TrainParams, read_section
    from landcover.model.model import build_model
    from landcover.training.components import configure_loss, configure_optimizer
    from landcover.training.loop import optimise

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = torch.cuda.is_available() and not config.get("cpu")  # cpu: only to test the plumbing
    device = torch.device("cuda", local_rank) if on_cuda else torch.device("cpu")
    if on_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if on_cuda else "gloo")
    sync = sync_of(device)
    tile, batch = config.get("tile", TILE), config.get("batch", BATCH)
    train = read_section(params(), "train", TrainParams)
    torch.manual_seed(local_rank)
    encoder = config.get("encoder", params()["model"]["encoder"])
    model = build_model(encoder, NUM_CLASSES).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    network = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if on_cuda else None)
        if world > 1
        else model
    )
    optimizer = configure_optimizer(model, train, device)
    loss_fn = configure_loss(train.loss)
    images = torch.randint(0, 256, (batch, tile, tile, 3), dtype=torch.uint8)
    images = images.pin_memory() if on_cuda else images
    masks = torch.randint(0, NUM_CLASSES, (batch, tile, tile), dtype=torch.long)

    # The trainer's own batch handling and optimizer step, in the precision train.precision resolves to
    settings = training_batch_settings(train, device)
    scaler = torch.amp.GradScaler(device.type) if settings.precision == "fp16" else None

    def step() -> None:
        loss = loss_fn(settings.logits(network, settings.inputs(images)), settings.targets(masks))
        optimise(loss, optimizer, None, 0.0, scaler)

    network.train()
    for _ in range(config["warmup"]):
        step()
    sync()
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(config["steps"]):
        step()
    sync()
    if world > 1:
        dist.barrier()
    seconds = (time.perf_counter() - start) / config["steps"]
    result = {
        "step_seconds": seconds,
        "gpus": world,
        "batch_per_gpu": batch,
        "tile": tile,
        "images_per_second": world * batch / seconds,
    }
    model.eval()
    sample = torch.zeros(batch, 3, tile, tile, device=device)
    with torch.no_grad():  # the forward's count, x 3: forward + backward
        result["step_flops_per_gpu"] = 3 * count_flops(lambda: model(sample))
    if world > 1:
        dist.destroy_process_group()
    return result


def measure_inference(config: dict) -> dict:
    """Seconds per 2448 px image with predict's settings: blending on the GPU against on the host."""
    import torch

    from benchmarks.blending import host_classes
    from landcover.inference.blending import SlidingWindows, fit_window

    device = torch.device("cuda") if torch.cuda.is_available() and not config.get("cpu") else torch.device("cpu")
    size = config.get("size", IMAGE_SIZE)
    predict = params()["predict"]
    model = random_model(config.get("encoder", params()["model"]["encoder"]), device)
    probability_fn = predict_probabilities(model, device, predict)
    settings = (NUM_CLASSES, fit_window(predict["window"], size, size), predict["overlap"], predict["batch_size"])
    runs = {
        "device_blending": SlidingWindows(probability_fn, *settings).classes,
        "host_blending": lambda image: host_classes(probability_fn, image, *settings),
    }
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    # The warm-up on the whole image: kernels, cudnn's choices
    seconds = time_alternating(runs, [image] * config["images"], image, sync_of(device))
    return {f"{name}_seconds_per_image": statistics.median(times) for name, times in seconds.items()} | {
        "image_size": size
    }


MEASUREMENTS = {"training": measure_training, "inference": measure_inference}


# --- The orchestrating side (benchmarks.speed's process) -------------------------------------------------


def launch(name: str, config: dict, processes: int = 1) -> dict:
    """Run one measurement in fresh processes (torchrun for several) and return rank 0's result."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "benchmarks.gpu", "--measure", name, json.dumps(config)]
    return run_for_json(command, f"GPU benchmark '{name}' on {processes} process(es)")


def run_section(mode: str, peaks: dict) -> dict:
    """The GPU section's results, or {"skipped": reason} without CUDA.

    `peaks`: the machine's ceilings as benchmarks.speed_peaks measured them (on the GPU, where there is one).
    """
    import torch

    if not torch.cuda.is_available():
        print("GPU section: skipped (no CUDA device)")
        return {"skipped": "no CUDA device"}
    plan = MODES[mode]
    gpus = torch.cuda.device_count()
    print(f"GPU section ({gpus} x {torch.cuda.get_device_name()}):")
    section = {"gpu": torch.cuda.get_device_name(), "gpus": gpus, "bf16_matmul_gflops": peaks["bf16_matmul_gflops"]}
    print("  training, 1 GPU ...", flush=True)
    section["training"] = {1: launch("training", {"warmup": plan["warmup"], "steps": plan["steps"]})}
    if gpus > 1:
        print(f"  training, {gpus} GPUs (DDP) ...", flush=True)
        section["training"][gpus] = launch("training", {"warmup": plan["warmup"], "steps": plan["steps"]}, gpus)
    print("  inference ...", flush=True)
    section["inference"] = launch("inference", {"images": plan["images"]})
    return section


def summarise(section: dict) -> dict:
    """Fractions of the bf16 matmul peak and the scaling efficiency of the GPU section's results."""
    if "skipped" in section:
        return section
    peak = section["bf16_matmul_gflops"] * 1e9
    rows = {}
    single = section["training"][1]["images_per_second"] if 1 in section["training"] else None
    for gpus, result in sorted(section["training"].items()):
        flops_rate = result["step_flops_per_gpu"] / result["step_seconds"]  # per GPU
        rows[gpus] = {
            "images_per_second": result["images_per_second"],
            "fraction_of_bf16_matmul_peak": flops_rate / peak,
            "scaling_efficiency": None if single is None else result["images_per_second"] / (gpus * single),
        }
    inference = section["inference"]
    return {
        "training": rows,
        "inference_seconds_per_image": {
            "device_blending": inference["device_blending_seconds_per_image"],
            "host_blending": inference["host_blending_seconds_per_image"],
        },
        "host_over_device_blending": inference["host_blending_seconds_per_image"]
        / inference["device_blending_seconds_per_image"],
    }


def report(section: dict | None) -> str:
    """The GPU section's lines for benchmarks.speed's table."""
    if not section:
        return ""
    if "skipped" in section:
        return f"\n\nGPU section: skipped ({section['skipped']})"
    summary = summarise(section)
    lines = [
        "",
        "",
        f"GPU section: {section['gpus']} x {section['gpu']}, bf16 matmul peak "
        f"{section['bf16_matmul_gflops']:.0f} GFLOP/s",
    ]
    lines += markdown_table(
        ["GPUs", f"training img/s ({TILE} px, batch {BATCH} per GPU)", "of bf16 matmul peak (per GPU)", "scaling"],
        (
            (
                gpus,
                f"{row['images_per_second']:.1f}",
                f"{row['fraction_of_bf16_matmul_peak']:.0%}",
                "" if gpus == 1 else f"{row['scaling_efficiency']:.0%}",
            )
            for gpus, row in summary["training"].items()
        ),
        "rrrr",
    )
    seconds = summary["inference_seconds_per_image"]
    lines.append(
        f"- inference, s per {section['inference']['image_size']} px image (predict params): "
        f"{seconds['device_blending']:.3f} blending on the GPU, {seconds['host_blending']:.3f} blending on "
        f"the host ({summary['host_over_device_blending']:.2f}x)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(
        "benchmarks.gpu",
        __doc__,
        epilog="Run through `python -m benchmarks.speed` (make bench); --measure is its child's option.",
    )
    parser.add_argument("--measure", nargs=2, metavar=("NAME", "CONFIG"), help="run one measurement, print its JSON")
    args = parser.parse_args(argv)
    if not args.measure:
        parser.error("run through `python -m benchmarks.speed` (make bench); --measure NAME CONFIG is its child")
    result = MEASUREMENTS[args.measure[0]](json.loads(args.measure[1]))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
