"""The model card: what a user of the exported model needs to know, as JSON and as Markdown.

Everything comes from files the card stage declares as deps: classes, colours, normalisation and
the encoder from the checkpoint; the training params from the checkpoint too (those it was
trained with, not today's params.yaml); the test scores from metrics/test.json and their 95% intervals from
metrics/test_low.json, metrics/test_high.json and metrics/test_intervals.json; the export check
from metrics/export.json; the data version as a content hash of the prepared data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from landcover.data.scaling import UINT8_RGB
from landcover.io.digests import file_sha256
from landcover.io.params import OUTPUT_STRIDE_MULTIPLE
from landcover.model.checkpoint import ModelInterface

CARD_FORMAT = 1


def content_hash(*folders: Path) -> str:
    """sha256 over every file's path (relative to its folder) and sha256, in sorted order: the data's version.

    The same files give the same hash on any machine and in any clone (unlike a git commit, which
    changes with every commit, or a path).
    """
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def card_content(
    interface: ModelInterface,
    training: dict,
    test_metrics: dict,
    test_intervals: dict,
    export_report: dict,
    predict: dict,
    data_version: str,
    models: dict[str, Path],
    calibration: dict | None = None,
) -> dict:
    """The card as JSON-ready data; `calibration` is the calibration stage's metrics/calibration.json, where given."""
    table = interface.table
    return {
        "format": CARD_FORMAT,
        "name": "landcover-deeplabv3plus",
        "architecture": f"DeepLabV3+ ({training['encoder']} encoder, segmentation-models-pytorch)",
        "files": {
            name: {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}
            for name, path in models.items()
        },
        **_interface(interface),
        "classes": [
            {"index": index, "name": name, "value": value, "colour": [int(c) for c in colour], "headline": counted}
            for index, (name, value, colour, counted) in enumerate(
                zip(table.names, table.values, table.colours, table.headline)
            )
        ],
        "training": {
            "params": training["params"],
            "best_epoch": training["best_epoch"],
            "best_val_miou_land": training["best_val_miou_land"],
        },
        "test_metrics": {**test_metrics, "predicted_with": predict},
        "test_intervals": test_intervals,
        "calibration": _calibration(interface, training, calibration),
        "export_check": export_report,
        "int8_model": int8_use(export_report.get("int8_gate"), predict.get("int8", True)),
        "data_version": {
            "sha256": data_version,
            "of": "every file of data/tiles and data/splits (the prepared images, masks and splits)",
        },
    }


def headline_intervals(about: dict, low: dict, high: dict) -> dict:
    """The card's test intervals: how they were made (metrics/test_intervals.json) and each headline score's
    interval from its bounds (metrics/test_low.json and metrics/test_high.json), None where a bound is."""
    bounds = {
        key: None if low[key] is None or high.get(key) is None else {"low": low[key], "high": high[key]} for key in low
    }
    return {**about, **bounds}


def int8_use(gate: dict | None, setting: bool | str) -> dict:
    """Whether predict's ONNX runtimes use the int8 model (predict.int8, and the export's int8 gate) and why (not).
    A report without a gate's verdict comes from an export that stopped where the gate failed: it passed."""
    gate = gate or {"passed": True, "reasons": []}
    if setting is False:
        return {"used": False, "why": "predict.int8 is false: predict runs the fp32 model"}
    if gate["passed"]:
        return {"used": True, "why": f"it passed its int8 gate at export (predict.int8 {str(setting).lower()})"}
    failed = f"it failed its int8 gate at export: {'; '.join(gate['reasons'])}"
    if setting is True:
        instead = "predict runs torch (bf16) on CPUs with native bf16, else the fp32 model (predict.int8 true)"
    else:
        instead = f"predict stops (predict.int8 {setting})"
    return {"used": False, "why": f"{failed}; {instead}"}


def _calibration(interface: ModelInterface, training: dict, figures: dict | None) -> dict:
    """The temperature the model's probabilities are made with, the fit's record (validation NLL before and
    after; why 1.0 was kept, where it was) and the test split's ECE and NLL before and after, where measured."""
    fit = training.get("calibration") or {}
    return {
        "temperature": interface.temperature,
        "fitted_on": "the validation split's pixels (negative log-likelihood)" if fit else None,
        "val_nll": {"before": fit.get("nll_before"), "after": fit.get("nll_after")} if fit else None,
        "kept_one_because": fit.get("reason") or None,
        "test": (figures or {}).get("test"),
    }


def _interface(interface: ModelInterface) -> dict:
    """The exported model's input, output and normalisation (its scaling: uint8 RGB's as always, or its own)."""
    scaling = interface.scaling
    mean_std = {"mean": list(scaling.mean), "std": list(scaling.std)}
    if scaling == UINT8_RGB:
        dtype, channels = "uint8", "RGB, 0-255"
        normalisation = {"applied": "inside the model: (pixel / 255 - mean) / std per channel", **mean_std}
    else:  # other bands or another scaling: its bands, type and scaling
        clip = "clip01((x - low) / (high - low))" if scaling.clip else "(x - low) / (high - low)"
        dtype = scaling.input_dtype
        channels = f"bands {','.join(map(str, scaling.bands))} of {scaling.dtype} images, raw values"
        normalisation = {
            "applied": f"inside the model: ({clip} - mean) / std per band",
            **mean_std,
            "low": list(scaling.low),
            "high": list(scaling.high),
        }
    return {
        "input": {
            "name": "image",
            "dtype": dtype,
            "layout": "NHWC",
            "channels": channels,
            "size_rule": f"height and width multiples of {OUTPUT_STRIDE_MULTIPLE}; batch, height and width are dynamic",
            "trained_on_tiles_of": interface.tile_size,
        },
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "layout": "NCHW",
            "meaning": (
                "softmax class probabilities (of the logits divided by the calibration temperature); argmax over C "
                "is the class index"
            ),
        },
        "normalisation": normalisation,
    }


def card_markdown(card: dict) -> str:
    """The card for people: the same facts as the JSON, a section each."""
    sections = (
        _files_section,
        _interface_section,
        _classes_section,
        _training_section,
        _test_section,
        _calibration_section,
    )
    summary = f"{card['architecture']}, land cover in {len(card['classes'])} classes."
    lines = [f"# Model card: {card['name']}", "", summary]
    for section in sections:
        lines += section(card)
    lines += _export_section(card["export_check"])
    int8 = card["int8_model"]
    lines += ["", f"The int8 model is {'used' if int8['used'] else 'not used'}: {int8['why']}."]
    data = card["data_version"]
    lines += ["", "## Data version", "", f"`{data['sha256']}`: sha256 of {data['of']}.", ""]
    return "\n".join(lines)


def _files_section(card: dict) -> list[str]:
    return ["", "## Files", "", "| model | file | bytes | sha256 |", "|---|---|---:|---|"] + [
        f"| {name} | `{entry['file']}` | {entry['bytes']} | `{entry['sha256']}` |"
        for name, entry in card["files"].items()
    ]


def _interface_section(card: dict) -> list[str]:
    spec_in, spec_out, norm = card["input"], card["output"], card["normalisation"]
    return [
        "",
        "## Input and output",
        "",
        f"- input `{spec_in['name']}`: {spec_in['dtype']} {spec_in['layout']}, {spec_in['channels']}; "
        f"{spec_in['size_rule']} (trained on {spec_in['trained_on_tiles_of']} px tiles; predict uses sliding "
        'windows with blending, README "Mapping new imagery")',
        f"- output `{spec_out['name']}`: {spec_out['dtype']} {spec_out['layout']}, {spec_out['meaning']}",
        f"- normalisation, {norm['applied']}: mean {norm['mean']}, std {norm['std']}",
    ]


def _classes_section(card: dict) -> list[str]:
    header = "| index | class | label value | colour (RGB) | in the headline mean |"
    return ["", "## Classes", "", header, "|---:|---|---:|---|---|"] + [
        f"| {c['index']} | {c['name']} | {c['value']} | {tuple(c['colour'])} | {'yes' if c['headline'] else 'no'} |"
        for c in card["classes"]
    ]


def _training_section(card: dict) -> list[str]:
    training = card["training"]
    return [
        "",
        "## Training",
        "",
        f"Kept epoch {training['best_epoch']} (validation mIoU over the land classes "
        f"{_number(training['best_val_miou_land'])}). Params:",
        "",
        "| param | value |",
        "|---|---|",
    ] + [f"| `{key}` | `{value}` |" for key, value in training["params"].items()]


def _test_section(card: dict) -> list[str]:
    test = dict(card["test_metrics"])
    predicted_with = test.pop("predicted_with")
    intervals = card.get("test_intervals") or {}
    level = f"{intervals['level']:.0%} interval" if "level" in intervals else "interval"
    lines = [
        "",
        "## Test metrics",
        "",
        "Whole test images, sliding window with blending; predicted with "
        + ", ".join(f"`predict.{key}: {value}`" for key, value in predicted_with.items())
        + ".",
        "",
        f"| metric | value | {level} |",
        "|---|---:|---|",
    ] + [f"| {key} | {_number(value)} | {interval_text(intervals.get(key))} |" for key, value in test.items()]
    if "trust" in intervals:
        lines += [
            "",
            f"The intervals come from {intervals['resamples']} bootstrap resamples of the test split: "
            f"{intervals['trust']}. What they mean and do not mean: docs/statistics.md in the project.",
        ]
    return lines


def interval_text(interval: dict | None) -> str:
    """An interval as `low to high`, or a dash where there is none."""
    return "-" if interval is None else f"{_number(interval['low'])} to {_number(interval['high'])}"


def _calibration_section(card: dict) -> list[str]:
    calibration = card.get("calibration") or {}
    lines = ["", "## Calibration", ""]
    temperature = calibration.get("temperature", 1.0)
    if calibration.get("val_nll") is None:
        return lines + [f"Temperature {temperature:g}: no fit recorded in the checkpoint (trained before calibration)."]
    val = calibration["val_nll"]
    line = (
        f"The logits are divided by the temperature {temperature:.4f} before the softmax (fitted on the validation "
        f"split's pixels: NLL {_number(val['before'])} at T = 1, {_number(val['after'])} with it)"
    )
    if calibration.get("kept_one_because"):
        line += f"; 1.0 kept: {calibration['kept_one_because']}"
    lines.append(line + ".")
    test = calibration.get("test")
    if test:
        lines += [
            "",
            "| test split | T = 1 | calibrated |",
            "|---|---:|---:|",
            f"| expected calibration error (15 bins) | {_number(test['ece_before'])} | {_number(test['ece_after'])} |",
            f"| negative log-likelihood | {_number(test['nll_before'])} | {_number(test['nll_after'])} |",
        ]
    return lines


def _export_section(check: dict) -> list[str]:
    return [
        "",
        "## Export check",
        "",
        f"On {check['check_tiles']} test tiles, against PyTorch fp32:",
        "",
        "| runtime | largest probability difference | argmax agreement |",
        "|---|---:|---:|",
    ] + [
        f"| {name.replace('_', ' ')} | {check[name]['max_abs_diff']:.3g} | {check[name]['argmax_agreement']:.4%} |"
        for name in ("onnxruntime_fp32", "onnxruntime_int8")
        if name in check
    ]


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def card_json(card: dict) -> str:
    return json.dumps(card, indent=2) + "\n"
