"""The model as an artifact: ONNX export and its check, the int8 model, runtimes in predict, the model card."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from stages import card as card_stage
from stages import export as export_stage
from stages.core.data.palette import ClassTable
from stages.core.data.tilestore import TileRecord, tile_name, write_index
from stages.core.inference.blending import sliding_window_probabilities
from stages.core.inference.export import compare, evenly_spaced, onnx_bytes
from stages.core.inference.probabilities import trained_model_probabilities
from stages.core.inference.runtimes import onnxruntime_probabilities, runtime_probabilities
from stages.core.io.errors import PipelineError
from stages.core.io.params import PredictParams, read_section
from stages.core.model.checkpoint import TrainedModel, checkpoint_config, load_trained_model, save_checkpoint
from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD, build_model
from tests.conftest import REPO, write_params

ENCODER, TILE = "resnet18", 32
TABLE = ClassTable.deepglobe()

# Built in a fresh process: the same seed must give the same bytes there as here.
EXPORT_IN_A_PROCESS = f"""
import hashlib, sys, torch
from stages.core.model.checkpoint import TrainedModel
from stages.core.inference.export import onnx_bytes
from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD, build_model
from stages.core.data.palette import ClassTable
torch.manual_seed(0)
model = build_model("{ENCODER}", 7).eval()
trained = TrainedModel(model, ClassTable.deepglobe(), IMAGENET_MEAN, IMAGENET_STD, {TILE})
print(hashlib.md5(onnx_bytes(trained)).hexdigest())
"""


def tiny_trained(seed: int = 0) -> TrainedModel:
    torch.manual_seed(seed)
    model = build_model(ENCODER, len(TABLE)).eval()
    return TrainedModel(model, TABLE, IMAGENET_MEAN, IMAGENET_STD, TILE)


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return tiny_trained()


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(onnx_bytes(trained))
    return path


def random_batch(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8))


def test_export_is_byte_identical_in_another_process(trained):
    here = hashlib.md5(onnx_bytes(trained)).hexdigest()
    there = subprocess.run([sys.executable, "-c", EXPORT_IN_A_PROCESS], cwd=REPO, capture_output=True, text=True)
    assert there.returncode == 0, there.stderr
    assert there.stdout.strip() == here


@pytest.mark.parametrize("tta", [False, True])
def test_onnxruntime_probabilities_match_pytorch_fp32(trained, onnx_file, tta):
    reference = trained_model_probabilities(trained, torch.device("cpu"), precision="fp32", tta=tta)
    candidate = onnxruntime_probabilities(onnx_file, tta=tta)
    batches = iter([random_batch(2, 32).numpy(), random_batch(1, 48, seed=1).numpy()])  # dynamic batch and side
    agreement = compare(reference, candidate, batches)
    assert agreement.max_abs_diff < 1e-4
    assert agreement.argmax_agreement == 1.0
    assert agreement.pixels == 2 * 32 * 32 + 48 * 48


def test_blended_prediction_through_onnxruntime_matches_pytorch(trained, onnx_file):
    """Same blending for every runtime: the whole-image class maps agree."""
    image = random_batch(1, 80, seed=3)[0, :, :72].numpy()  # 72 x 80: windows flush with the edges
    maps = [
        sliding_window_probabilities(fn, image, len(TABLE), 32, 0.25, 3).argmax(axis=0)
        for fn in (
            trained_model_probabilities(trained, torch.device("cpu"), "fp32", False),
            onnxruntime_probabilities(onnx_file),
        )
    ]
    assert (maps[0] == maps[1]).mean() >= 0.999


def test_evenly_spaced_is_a_fixed_spread_subset():
    records = list(range(10))
    assert evenly_spaced(records, 3) == [0, 4, 9]  # type: ignore[arg-type]
    assert evenly_spaced(records, 20) == records  # type: ignore[arg-type]
    assert evenly_spaced(records, 1) == [0]  # type: ignore[arg-type]


def write_tiny_project(root, trained: TrainedModel) -> dict:
    """A checkpoint, tiles (two 64 px images, 32 px tiles) and splits, as the stages write them."""
    rng = np.random.default_rng(0)
    (root / "tiles" / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    records = {}
    for image_id in ("1", "2"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            root / "tiles" / "images" / f"{image_id}.png"
        )
        records[image_id] = [
            TileRecord(tile_name(image_id, y, x), image_id, y, x, TILE, 64, 64) for y in (0, 32) for x in (0, 32)
        ]
    TABLE.to_csv(root / "tiles" / "class_dict.csv")
    write_index(root / "tiles" / "index.csv", records["1"] + records["2"])
    write_index(root / "splits" / "train.csv", records["1"])
    write_index(root / "splits" / "test.csv", records["2"])
    save_checkpoint(
        root / "best.pt",
        config=checkpoint_config(ENCODER, TABLE, TILE),
        model=trained.model.state_dict(),
        params={"model.encoder": ENCODER, "train.lr": 0.003},
        epoch=3,
        best_miou=0.5,
    )
    params = write_params(root / "params.yaml", export={"check_tiles": 4, "calibration_tiles": 4})
    return {"root": root, "params": params}


def export_args(root) -> list[str]:
    return [
        "--checkpoint",
        str(root / "best.pt"),
        "--tiles",
        str(root / "tiles"),
        "--splits",
        str(root / "splits"),
        "--output",
        str(root / "export"),
        "--report",
        str(root / "export.json"),
        "--params",
        str(root / "params.yaml"),
    ]


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    project = write_tiny_project(tmp_path_factory.mktemp("project"), trained)
    export_stage.main(export_args(project["root"]))
    return project


def test_export_stage_writes_both_models_and_the_check(exported, capsys):
    root = exported["root"]
    report = json.loads((root / "export.json").read_text())
    assert report["check_tiles"] == 4 and report["calibration_tiles"] == 4
    assert report["onnxruntime_fp32"]["argmax_agreement"] >= 0.999
    assert report["onnxruntime_fp32"]["max_abs_diff"] < 1e-4
    assert report["onnxruntime_fp32"]["pixels"] == 4 * TILE * TILE
    assert sorted(path.name for path in (root / "export").iterdir()) == ["model.int8.onnx", "model.onnx"]
    # the int8 model runs and gives probabilities, and is smaller than the fp32 one
    probs = onnxruntime_probabilities(root / "export" / "model.int8.onnx")(random_batch(2, 32))
    assert probs.shape == (2, len(TABLE), 32, 32)
    np.testing.assert_allclose(probs.sum(dim=1).numpy(), 1, atol=1e-3)
    assert (root / "export" / "model.int8.onnx").stat().st_size < (root / "export" / "model.onnx").stat().st_size / 2


def test_int8_export_is_deterministic(exported, tmp_path):
    """Calibration on the same tiles gives the same int8 bytes (so dvc.lock does not change on a rerun)."""
    root = exported["root"]
    args = export_args(root)
    args[args.index("--output") + 1] = str(tmp_path / "again")
    args[args.index("--report") + 1] = str(tmp_path / "again.json")
    export_stage.main(args)
    for name in ("model.onnx", "model.int8.onnx"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "export" / name).read_bytes(), name


def test_export_check_fails_on_a_model_that_disagrees_and_writes_nothing(trained, tmp_path, monkeypatch, capsys):
    write_tiny_project(tmp_path, trained)
    other = tiny_trained(seed=1)  # a different model's graph stands in for a broken export
    monkeypatch.setattr(export_stage, "onnx_bytes", lambda _trained, opset: onnx_bytes(other, opset))
    with pytest.raises(SystemExit) as exit_info:
        export_stage.run_stage(lambda: export_stage.main(export_args(tmp_path)))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(
        "error: export check failed: the ONNX model (onnxruntime, fp32) agrees with PyTorch on"
    )
    assert "below the 99.90% required" in error[0]
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())
    assert not (tmp_path / "export.json").exists()


def test_card_has_classes_colours_normalisation_and_the_size_rule(exported):
    root = exported["root"]
    (root / "test.json").write_text(
        json.dumps({"miou_land": 0.61, "miou": 0.55, "mean_dice": 0.7, "pixel_accuracy": 0.8})
    )
    card_stage.main(
        [
            "--checkpoint",
            str(root / "best.pt"),
            "--fp32",
            str(root / "export" / "model.onnx"),
            "--int8",
            str(root / "export" / "model.int8.onnx"),
            "--test",
            str(root / "test.json"),
            "--export-report",
            str(root / "export.json"),
            "--tiles",
            str(root / "tiles"),
            "--splits",
            str(root / "splits"),
            "--params",
            str(exported["params"]),
        ]
    )
    card = json.loads((root / "export" / "model_card.json").read_text())
    assert [c["name"] for c in card["classes"]] == list(TABLE.names)
    assert [c["colour"] for c in card["classes"]] == TABLE.colours.tolist()
    assert card["normalisation"]["mean"] == list(IMAGENET_MEAN) and card["normalisation"]["std"] == list(IMAGENET_STD)
    assert "multiples of 16" in card["input"]["size_rule"] and card["input"]["dtype"] == "uint8"
    assert card["test_metrics"]["miou_land"] == 0.61 and card["test_metrics"]["predicted_with"]["window"] == 256
    assert card["training"] == {
        "params": {"model.encoder": ENCODER, "train.lr": 0.003},
        "best_epoch": 3,
        "best_val_miou_land": 0.5,
    }
    model = root / "export" / "model.onnx"
    assert card["files"]["fp32"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert len(card["data_version"]["sha256"]) == 64
    markdown = (root / "export" / "model_card.md").read_text()
    assert "| 4 | water | (0, 0, 255) |" in markdown and "multiples of 16" in markdown and "0.6100" in markdown


def predict_section(**values) -> dict:
    base = {
        "window": 256,
        "overlap": 0.25,
        "batch_size": 8,
        "tta": False,
        "precision": "auto",
        "compile": False,
        "runtime": "torch",
        "int8": False,
        "processes": 1,
    }
    return {"predict": {**base, **values}}


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"runtime": "tensorrt"},
            "params: predict.runtime must be one of torch, onnxruntime, openvino, got 'tensorrt'",
        ),
        ({"int8": True}, "params: predict.int8 needs predict.runtime onnxruntime or openvino"),
    ],
)
def test_predict_runtime_params_are_checked(values, message):
    with pytest.raises(PipelineError, match=message.replace(".", r"\.").replace("(", r"\(")):
        read_section(predict_section(**values), "predict", PredictParams)


def test_openvino_missing_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    params = read_section(predict_section(runtime="openvino"), "predict", PredictParams)
    with pytest.raises(
        PipelineError, match=r"predict\.runtime openvino needs the openvino package.*make install-runtime"
    ):
        runtime_probabilities(params, tmp_path / "never-read.pt", torch.device("cpu"), tmp_path)


def test_onnxruntime_without_an_export_says_which_stage_to_run(tmp_path):
    params = read_section(predict_section(runtime="onnxruntime", int8=True), "predict", PredictParams)
    with pytest.raises(PipelineError, match=r"model\.int8\.onnx: exported model not found; run the export stage"):
        runtime_probabilities(params, tmp_path / "never-read.pt", torch.device("cpu"), tmp_path)


def test_a_checkpoint_round_trip_exports_the_same_bytes(exported, trained):
    """The export stage loads best.pt: the loaded model exports exactly as the one saved."""
    loaded = load_trained_model(exported["root"] / "best.pt")
    assert onnx_bytes(loaded) == (exported["root"] / "export" / "model.onnx").read_bytes()


def test_registry_commands_fetch_a_tagged_model_version_and_a_commits_output(tmp_path):
    """docs/model-artifact.md's registry commands, on a one-stage pipeline with `artifacts:` and a local DVC remote:
    `dvc artifacts get` fetches the version a GTO tag names, `dvc get --rev` the output of any commit."""
    from tests.test_ci import sh

    repo, out = tmp_path / "repo", tmp_path / "out"
    repo.mkdir(), out.mkdir()
    (repo / "params.yaml").write_text("version: 1\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python -c \"open('model.bin', 'w').write(open('params.yaml').read())\"\n"
        "    params: [version]\n    outs: [model.bin]\nartifacts:\n  tiny-model:\n    path: model.bin\n"
        "    type: model\n    desc: a model\n    labels: [test]\n"
    )
    commits = {}
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", "store", str(tmp_path / "store")],
    ):
        assert sh(repo, *command).returncode == 0, command
    for version in (1, 2):
        (repo / "params.yaml").write_text(f"version: {version}\n")
        for command in (
            ["dvc", "repro", "-q"],
            ["dvc", "push", "-q"],
            ["git", "add", "-A"],
            ["git", "commit", "-q", "-m", f"model {version}"],
            ["git", "tag", "-a", f"tiny-model@v{version}.0.0", "-m", f"tiny-model v{version}.0.0"],
        ):
            assert sh(repo, *command).returncode == 0, command
        commits[version] = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    (repo / ".dvc" / "cache").rename(tmp_path / "moved-cache")  # only the remote has the files now

    got = sh(out, "dvc", "artifacts", "get", str(repo), "tiny-model", "--rev", "v1.0.0", "-o", "v1.bin")
    assert got.returncode == 0, got.stderr
    assert (out / "v1.bin").read_text() == "version: 1\n"
    latest = sh(out, "dvc", "artifacts", "get", str(repo), "tiny-model", "-o", "latest.bin")
    assert latest.returncode == 0 and (out / "latest.bin").read_text() == "version: 2\n"
    by_commit = sh(out, "dvc", "get", str(repo), "model.bin", "--rev", commits[1], "-o", "c1.bin")
    assert by_commit.returncode == 0, by_commit.stderr
    assert (out / "c1.bin").read_text() == "version: 1\n"


def test_openvino_probabilities_agree_with_pytorch(trained, onnx_file):
    """OpenVINO runs the fp32 file in bf16 where the CPU has it: close, not equal (make install-runtime)."""
    pytest.importorskip("openvino")
    from stages.core.inference.runtimes import openvino_probabilities

    reference = trained_model_probabilities(trained, torch.device("cpu"), precision="fp32", tta=False)
    agreement = compare(reference, openvino_probabilities(onnx_file), iter([random_batch(2, 32).numpy()]))
    assert agreement.argmax_agreement >= 0.99 and agreement.max_abs_diff < 0.1
