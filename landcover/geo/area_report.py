"""A labelled sample checked against its design, assessed, and reported: error-adjusted areas with intervals.

The sample (landcover.geo.sampling's CSV or GeoPackage, its `reference` column filled in) is read back and
every point checked against the design that drew it: the same ids at the same places, inside the map, every
reference a class of the map (or unlabelled: empty or `cannot-tell`), at least 2 labelled points a stratum;
the map itself must still have the design's sha256. The estimates are landcover.evaluation.area_estimation's
(Olofsson et al. 2014, Stehman 2014) and are written as JSON, CSV and Markdown.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from landcover.evaluation.area_estimation import Assessment, StratifiedSample, assess
from landcover.geo.sampling import CANNOT_TELL, COORDINATE_TOLERANCE
from landcover.io.errors import PipelineError

LISTED = 5  # ids named in a refusal, at most
INTERVAL_KEYS = ("estimate", "ci95_low", "ci95_high")


@dataclass(frozen=True)
class LabelledSample:
    sample: StratifiedSample
    dropped: int  # points of the design without a label (allowed by --allow-missing)
    labelled: int


def ids_text(ids: list[int]) -> str:
    more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(str(i) for i in ids[:LISTED]) + more


def outside_map(design: dict, x: float, y: float) -> bool:
    column, row = ~Affine(*design["transform"]) @ (x, y)
    return not (0 <= column < design["width"] and 0 <= row < design["height"])


def check_points(design: dict, rows: list[dict], sample_path: Path) -> None:
    """Every row a point of the design, once, where the design put it, inside the map."""
    planned = {point["point_id"]: point for point in design["points"]}
    pixel = abs(Affine(*design["transform"]).a)
    outside = [row["point_id"] for row in rows if outside_map(design, row["x"], row["y"])]
    if outside:
        raise PipelineError(f"{sample_path}: points {ids_text(outside)} lie outside the map of the design")
    unknown = [row["point_id"] for row in rows if row["point_id"] not in planned]
    moved = [
        row["point_id"]
        for row in rows
        if row["point_id"] in planned
        and max(abs(row["x"] - planned[row["point_id"]]["x"]), abs(row["y"] - planned[row["point_id"]]["y"]))
        > COORDINATE_TOLERANCE * pixel
    ]
    if unknown or moved:
        listed = ids_text(unknown + moved)
        raise PipelineError(f"{sample_path}: points {listed} are not in the design (other ids, or moved)")
    ids, counts = np.unique([row["point_id"] for row in rows], return_counts=True)
    twice = ids[counts > 1].tolist()
    if twice:
        raise PipelineError(f"{sample_path}: points {ids_text(twice)} are in the sample more than once")


def labelled_sample(design: dict, rows: list[dict], sample_path: Path, allow_missing: bool) -> LabelledSample:
    """The sample as the estimators take it: each labelled point's stratum, map class and reference class."""
    check_points(design, rows, sample_path)
    classes = design["classes"]
    class_index = {name: index for index, name in enumerate(classes)}
    labels = {row["point_id"]: row["reference"] for row in rows}
    unlabelled = [
        point["point_id"] for point in design["points"] if labels.get(point["point_id"], "") in ("", CANNOT_TELL)
    ]
    if unlabelled and not allow_missing:
        raise PipelineError(
            f"{sample_path}: {len(unlabelled)} points have no reference class (empty, {CANNOT_TELL} or absent): "
            f"{ids_text(unlabelled)}; label them, or give --allow-missing to leave them out"
        )
    wrong = sorted({label for label in labels.values() if label not in ("", CANNOT_TELL) and label not in class_index})
    if wrong:
        raise PipelineError(
            f"{sample_path}: reference {wrong[0]!r} is not a class of the map ({', '.join(classes)}, or {CANNOT_TELL})"
        )
    missing = set(unlabelled)
    used = [point for point in design["points"] if point["point_id"] not in missing]
    strata_names = [stratum["stratum"] for stratum in design["strata"]]
    stratum_index = {name: index for index, name in enumerate(strata_names)}
    strata = np.array([stratum_index[point["stratum"]] for point in used], dtype=np.int64)
    counts = np.bincount(strata, minlength=len(strata_names))
    thin = [(name, int(count)) for name, count in zip(strata_names, counts) if count < 2]
    if thin:
        listed = ", ".join(f"{name} ({count})" for name, count in thin[:LISTED])
        raise PipelineError(
            f"{sample_path}: strata with fewer than 2 labelled points have no variance: {listed}; label more of them"
        )
    sample = StratifiedSample(
        weights=np.array([stratum["weight"] for stratum in design["strata"]]),
        strata=strata,
        map_classes=np.array([class_index[point["map_class"]] for point in used], dtype=np.int64),
        reference=np.array([class_index[labels[point["point_id"]]] for point in used], dtype=np.int64),
        num_classes=len(classes),
    )
    return LabelledSample(sample, dropped=len(unlabelled), labelled=len(used))


def is_change(design: dict) -> bool:
    return [entry["role"] for entry in design["maps"]] == ["before", "after"]


def assessment_report(design: dict, labelled: LabelledSample, design_path: Path, sample_path: Path) -> dict:
    """The estimates as a JSON-ready dict: classes with mapped pixels or points, hectares from the design."""
    total_hectares = sum(stratum["hectares"] for stratum in design["strata"])
    result: Assessment = assess(labelled.sample, total_hectares)
    mapped = [entry["hectares"] for entry in design["mapped"]]
    in_map = result.counts.sum(axis=1)
    in_reference = result.counts.sum(axis=0)
    shown = [k for k, name in enumerate(design["classes"]) if mapped[k] > 0 or in_map[k] or in_reference[k]]
    return {
        "design": str(design_path),
        "sample": str(sample_path),
        "maps": design["maps"],
        "kind": "change: from-to transitions" if is_change(design) else "classes",
        "points_labelled": labelled.labelled,
        "points_left_out": labelled.dropped,
        "total_hectares": total_hectares,
        "overall_accuracy": result.overall.as_dict(),
        "classes": [
            {
                "class": design["classes"][k],
                "mapped_hectares": mapped[k],
                "adjusted_hectares": result.areas[k].as_dict(),
                "area_proportion": result.area_proportions[k].as_dict(),
                "users_accuracy": result.users[k].as_dict(),
                "producers_accuracy": result.producers[k].as_dict(),
                "points_of_map_class": int(in_map[k]),
                "points_of_reference_class": int(in_reference[k]),
            }
            for k in shown
        ],
        "error_matrix": {
            "rows": "map class",
            "columns": "reference class",
            "classes": [design["classes"][k] for k in shown],
            "counts": result.counts[np.ix_(shown, shown)].tolist(),
            "area_proportions": result.proportions[np.ix_(shown, shown)].tolist(),
        },
        "strata": [
            {"stratum": stratum["stratum"], "weight": stratum["weight"], "points_labelled": int(count)}
            for stratum, count in zip(design["strata"], labelled.sample.stratum_sizes)
        ],
        "method": (
            "stratified estimators of Stehman 2014 (IJRS 35, eqs. 2, 25, 27, 28), Olofsson et al. 2014's "
            "(RSE 148, eqs. 1-11) where the strata are the map classes; 95% intervals: +-1.96 standard errors"
        ),
    }


def interval_text(entry: dict, digits: int) -> str:
    if entry["estimate"] is None:
        return "-"
    if entry["standard_error"] is None:
        return f"{entry['estimate']:.{digits}f}"
    half = entry["ci95_high"] - entry["estimate"]
    return f"{entry['estimate']:,.{digits}f} ± {half:,.{digits}f}"


def markdown(report: dict) -> str:
    overall = report["overall_accuracy"]
    what = "from-to transition" if report["kind"].startswith("change") else "class"
    lines = [
        "# Area and accuracy from the labelled sample",
        "",
        f"{report['points_labelled']} labelled points ({report['points_left_out']} left out unlabelled) over "
        f"{report['total_hectares']:,.1f} ha; intervals are 95% (±1.96 standard errors).",
        "",
        f"Overall accuracy: {interval_text(overall, 3)}",
        "",
        f"| {what} | map area (ha) | estimated area (ha) | user's accuracy | producer's accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["classes"]:
        lines.append(
            f"| {row['class']} | {row['mapped_hectares']:,.1f} | {interval_text(row['adjusted_hectares'], 1)} | "
            f"{interval_text(row['users_accuracy'], 3)} | {interval_text(row['producers_accuracy'], 3)} |"
        )
    matrix = report["error_matrix"]
    lines += ["", "Error matrix, points (rows: map, columns: reference):", ""]
    lines.append("| map \\ reference | " + " | ".join(matrix["classes"]) + " |")
    lines.append("|---" * (len(matrix["classes"]) + 1) + "|")
    for name, counts in zip(matrix["classes"], matrix["counts"]):
        lines.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
    lines += ["", "Error matrix, estimated area proportions:", ""]
    lines.append("| map \\ reference | " + " | ".join(matrix["classes"]) + " |")
    lines.append("|---" * (len(matrix["classes"]) + 1) + "|")
    for name, shares in zip(matrix["classes"], matrix["area_proportions"]):
        lines.append(f"| {name} | " + " | ".join(f"{s:.4f}" for s in shares) + " |")
    lines += ["", f"Method: {report['method']}.", ""]
    return "\n".join(lines)


def write_assessment(report: dict, staged: dict[str, Path]) -> None:
    """assessment.json, assessment.csv (a row per class), error_matrix.csv and assessment.md into staging paths."""
    staged["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with open(staged["csv"], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        measures = ("adjusted_hectares", "users_accuracy", "producers_accuracy")
        writer.writerow(
            ["class", "mapped_hectares"]
            + [f"{m}{part}" for m in measures for part in ("", "_ci95_low", "_ci95_high")]
            + ["points_of_map_class", "points_of_reference_class"]
        )
        for row in report["classes"]:
            values = [row["class"], repr(row["mapped_hectares"])]
            for measure in measures:
                entry = row[measure]
                values += [
                    "" if entry[key] is None else repr(entry[key]) for key in ("estimate", "ci95_low", "ci95_high")
                ]
            writer.writerow(values + [row["points_of_map_class"], row["points_of_reference_class"]])
        overall = report["overall_accuracy"]
        writer.writerow(
            ["overall_accuracy", ""]
            + ["" if overall[key] is None else repr(overall[key]) for key in INTERVAL_KEYS]
            + [""] * 8
        )
    matrix = report["error_matrix"]
    with open(staged["matrix"], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["table", "map \\ reference", *matrix["classes"]])
        for name, counts in zip(matrix["classes"], matrix["counts"]):
            writer.writerow(["points", name, *counts])
        for name, shares in zip(matrix["classes"], matrix["area_proportions"]):
            writer.writerow(["area_proportion", name, *(repr(s) for s in shares)])
    staged["markdown"].write_text(markdown(report), encoding="utf-8")
