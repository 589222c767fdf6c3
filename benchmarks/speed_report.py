"""benchmarks.speed's figures: the headline ratios and fractions of the machine's peaks, judged against the
targets, and the tables printed and kept in benchmarks/results.json."""

from __future__ import annotations

import statistics

from benchmarks.common import IMAGE_SIZE, markdown_table, params
from benchmarks.speed_training import BATCH_SIZE

TARGETS = {"training": 2.2, "loading": 30.0, "inference": 3.0, "tile": 0.5}
RUNTIME_TARGET = 2.0  # some predict.runtime at 2x the seed loop's speed, blending kept
# The share of its convolution ceiling a training step should reach, by CPU class: (the ceiling's precision, share).
# An AMX CPU's bf16 convolutions are so fast that the memory-bound rest of the step (batch norm, activations, the
# optimizer) weighs most there, hence the lowest share.
HARDWARE_TARGETS = {
    "AMX": ("bf16", 0.25),
    "AVX512-BF16 without AMX": ("bf16", 0.45),
    "no native bf16": ("fp32", 0.60),
}


def cpu_class(cpu_bf16: list[str]) -> str:
    """The HARDWARE_TARGETS class of a CPU from its bf16 flags (benchmarks.common.machine's cpu_bf16)."""
    if "amx_bf16" in cpu_bf16:
        return "AMX"
    return "AVX512-BF16 without AMX" if "avx512_bf16" in cpu_bf16 else "no native bf16"


def summarise(results: dict) -> dict:
    """The headline figures and ratios, as printed in the table."""
    peaks = {name: value * 1e9 for name, value in results["peaks"].items() if name.endswith("_gflops")}
    training = results["training"]
    project_step = statistics.median(training["project_step_seconds"])
    seed_step = statistics.median(training["seed_step_seconds"])
    loading, inference, tiling = results["loading"], results["inference"], results["tiling"]
    project_infer = inference["project"]["seconds_per_image"]
    seed_infer = inference["seed"]["seconds_per_image"]
    train_rate = BATCH_SIZE / project_step
    loader_rate = 1000 / loading["project"]["ms_per_sample"]
    train_flops_rate = training["step_flops"] / project_step
    infer_flops_rate = inference["project"]["image_flops"] / project_infer
    return {
        "peaks_gflops": results["peaks"],
        # The most bf16 can give over fp32 for the network's main work, on this machine.
        "bf16_over_fp32_convolution": peaks["bf16_conv_gflops"] / peaks["fp32_conv_gflops"],
        "training_images_per_second": {"project": train_rate, "seed": BATCH_SIZE / seed_step},
        "training_speedup": seed_step / project_step,
        "training_fraction_of_bf16_matmul_peak": train_flops_rate / peaks["bf16_matmul_gflops"],
        "training_fraction_of_bf16_conv_peak": train_flops_rate / peaks["bf16_conv_gflops"],
        "seed_training_fraction_of_fp32_conv_peak": training["step_flops"] / seed_step / peaks["fp32_conv_gflops"],
        "loading_ms_per_mp": {"project": loading["project"]["ms_per_mp"], "seed": loading["seed"]["ms_per_mp"]},
        "loading_speedup_per_mp": loading["seed"]["ms_per_mp"] / loading["project"]["ms_per_mp"],
        "loader_samples_per_second": loader_rate,
        "loader_over_training_rate": loader_rate / train_rate,
        "inference_seconds_per_image": {"project": project_infer, "seed": seed_infer},
        "inference_speedup": seed_infer / project_infer,
        "inference_fraction_of_bf16_matmul_peak": infer_flops_rate / peaks["bf16_matmul_gflops"],
        "inference_fraction_of_bf16_conv_peak": infer_flops_rate / peaks["bf16_conv_gflops"],
        # The best ratio predict could reach with its window layout, running at the bf16 convolution peak.
        "inference_speedup_bound_at_conv_peak": seed_infer
        / (inference["project"]["image_flops"] / peaks["bf16_conv_gflops"]),
        "tile_fraction_of_bare": tiling["stage"]["mp_per_second"] / tiling["bare"]["mp_per_second"],
        **hardware_fractions(results, peaks),
    }


def hardware_fractions(results: dict, peaks: dict[str, float]) -> dict:
    """The training step's share of the convolution ceiling in its own precision, eager and with train.compile, and
    the target of this CPU's class."""
    training = results["training"]
    precision = training.get("precision", "bf16")
    ceiling = peaks[f"{precision}_conv_gflops"]
    klass = cpu_class(results.get("cpu_bf16", []))
    summary = {
        "cpu_class": klass,
        "training_precision": precision,
        "training_fraction_of_conv_peak": training["step_flops"]
        / statistics.median(training["project_step_seconds"])
        / ceiling,
        "hardware_target": HARDWARE_TARGETS[klass],
    }
    compiled = results.get("training_compiled")
    if compiled:
        # the ratio of the two steps timed alternating in one process, applied to the eager step measured beside
        # the seed's: one eager figure in the report, and the compiled one as far from it as the ratio says
        speedup = statistics.median(compiled["project_step_seconds"]) / statistics.median(
            compiled["compiled_step_seconds"]
        )
        summary |= {
            "compiled_training_fraction_of_conv_peak": summary["training_fraction_of_conv_peak"] * speedup,
            "compiled_over_eager_step": speedup,
            "compile_seconds": compiled["compile_seconds"],
        }
    return summary


def bf16_lines(summary: dict) -> list[str]:
    """Training's and inference's shares of the bf16 peaks, where the step runs in bf16 (on a CPU that emulates
    bf16 those peaks are a few GFLOP/s, and an fp32 step's share of them says nothing)."""
    if summary["training_precision"] != "bf16":
        return []
    return [
        f"- training reaches {summary['training_fraction_of_bf16_matmul_peak']:.0%} of the bf16 matmul peak "
        f"({summary['training_fraction_of_bf16_conv_peak']:.0%} of the convolution peak).",
        f"- inference reaches {summary['inference_fraction_of_bf16_matmul_peak']:.0%} of the bf16 matmul peak "
        f"({summary['inference_fraction_of_bf16_conv_peak']:.0%} of the convolution peak).",
    ]


def hardware_line(summary: dict) -> str:
    """The training step against its ceiling and its CPU class's target, eager and compiled."""
    precision, share = summary["hardware_target"]
    best = max(summary["training_fraction_of_conv_peak"], summary.get("compiled_training_fraction_of_conv_peak", 0))
    compiled = (
        f", compiled {summary['compiled_training_fraction_of_conv_peak']:.0%} "
        f"({summary['compiled_over_eager_step']:.2f}x the eager step, "
        f"after a {summary['compile_seconds']:.0f} s compile)"
        if "compile_seconds" in summary
        else ""
    )
    judged = (
        verdict(best, share)
        if precision == summary["training_precision"]
        else (f"not judged: the step ran in {summary['training_precision']}, the target is of the {precision} ceiling")
    )
    return (
        f"- training step at {summary['training_fraction_of_conv_peak']:.0%} of the {summary['training_precision']} "
        f"convolution peak eager{compiled}; a CPU with {summary['cpu_class']}: target {share:.0%} of the {precision} "
        f"peak, {judged}."
    )


def verdict(value: float, target: float) -> str:
    return f"{'met' if value >= target else 'MISSED'} (target {target:g})"


def report(results: dict, summary: dict) -> str:
    """The main table (project against seed or bare, each ratio judged) and the notes on peaks and windows."""
    training, loading = results["training"], results["loading"]
    inference, tiling = results["inference"], results["tiling"]
    rows = [
        (
            "training, img/s (8 x 256 px)",
            f"{summary['training_images_per_second']['project']:.2f}",
            f"{summary['training_images_per_second']['seed']:.2f}",
            summary["training_speedup"],
            TARGETS["training"],
            training["project_peak_rss_mb"],
            training["seed_peak_rss_mb"],
        ),
        (
            "loading, ms per MP delivered",
            f"{loading['project']['ms_per_mp']:.0f}",
            f"{loading['seed']['ms_per_mp']:.0f}",
            summary["loading_speedup_per_mp"],
            TARGETS["loading"],
            loading["project"]["peak_rss_mb"],
            loading["seed"]["peak_rss_mb"],
        ),
        (
            "loading, ms per 256 px sample",
            f"{loading['project']['ms_per_sample']:.1f}",
            f"{loading['seed']['ms_per_sample']:.1f}",
            None,
            None,
            None,
            None,
        ),
        (
            f"inference, s per {IMAGE_SIZE} px image",
            f"{inference['project']['seconds_per_image']:.2f}",
            f"{inference['seed']['seconds_per_image']:.2f}",
            summary["inference_speedup"],
            TARGETS["inference"],
            inference["project"]["peak_rss_mb"],
            inference["seed"]["peak_rss_mb"],
        ),
        (
            "tile stage, MP/s (vs bare decode+write)",
            f"{tiling['stage']['mp_per_second']:.1f}",
            f"{tiling['bare']['mp_per_second']:.1f}",
            summary["tile_fraction_of_bare"],
            TARGETS["tile"],
            tiling["stage"]["peak_rss_mb"],
            tiling["bare"]["peak_rss_mb"],
        ),
    ]
    lines = markdown_table(
        ["measure", "project", "seed / bare", "ratio", "target", "peak RSS MB (project / seed)"],
        (
            (
                name,
                ours,
                theirs,
                f"{ratio:.2f}x" if ratio is not None else "",
                verdict(ratio, target) if ratio is not None and target is not None else "",
                f"{rss_ours:.0f} / {rss_theirs:.0f}" if rss_ours is not None else "",
            )
            for name, ours, theirs, ratio, target, rss_ours, rss_theirs in rows
        ),
        "lrrrlr",
    )
    project_predict = inference["project"]["settings"]
    peaks = summary["peaks_gflops"]
    lines += [
        "",
        f"- ceilings, GFLOP/s: bf16 matmul {peaks['bf16_matmul_gflops']:.0f}, bf16 3x3 convolution "
        f"{peaks['bf16_conv_gflops']:.0f}; fp32 matmul {peaks['fp32_matmul_gflops']:.0f}, fp32 convolution "
        f"{peaks['fp32_conv_gflops']:.0f}. bf16 convolutions are {summary['bf16_over_fp32_convolution']:.2f}x fp32 "
        "ones here: the most precision alone can give.",
        *bf16_lines(summary),
        f"- the seed's fp32 step reaches {summary['seed_training_fraction_of_fp32_conv_peak']:.0%} of the fp32 "
        "convolution peak.",
        hardware_line(summary),
        f"- loader ({params()['train']['workers']} workers) delivers {summary['loader_samples_per_second']:.0f} "
        f"samples/s, {summary['loader_over_training_rate']:.1f}x what a training step consumes "
        f"({summary['training_images_per_second']['project']:.1f} img/s).",
        f"- predict: window {inference['project']['window']}, overlap {project_predict['overlap']}, "
        f"batch {project_predict['batch_size']}: {inference['project']['windows']} windows per image against the "
        f"plain loop's {inference['seed']['windows']}; even at the bf16 convolution peak it would be "
        f"{summary['inference_speedup_bound_at_conv_peak']:.2f}x the plain loop.",
    ]
    return "\n".join(lines)


def report_explored(explored: dict) -> str:
    """The settings tried in full mode: tile formats, loader workers, predict settings; "" in quick mode."""
    if not explored:
        return ""
    lines = ["", "settings explored:"]
    lines += markdown_table(
        ["tile format", "KB per tile", "write ms", "decode ms"],
        (
            (name, f"{f['kb_per_tile']:.0f}", f"{f['write_ms']:.2f}", f"{f['decode_ms']:.2f}")
            for name, f in explored["formats"].items()
            if name != "peak_rss_mb"
        ),
        "lrrr",
    )
    lines.append("")
    lines += markdown_table(
        ["loader workers", "ms per sample", "first batch s"],
        (
            (workers, f"{r['ms_per_sample']:.1f}", f"{r['first_batch_seconds']:.2f}")
            for workers, r in explored["loader_workers"].items()
        ),
        "rrr",
    )
    lines.append("")
    lines += markdown_table(
        ["predict setting (else params.yaml)", "windows", "s per image", "warm-up s"],
        (
            (label, r["windows"], f"{r['seconds_per_image']:.2f}", f"{r['warmup_seconds']:.1f}")
            for label, r in explored["inference"].items()
        ),
        "lrrr",
    )
    return "\n".join(lines)
