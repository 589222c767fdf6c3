"""The model as an artifact: ONNX export and its check, the int8 model, runtimes in predict, the model card."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

from landcover.cli import map as map_command
from landcover.data.palette import ClassTable
from landcover.data.scaling import IMAGENET_MEAN, IMAGENET_STD, UINT8_RGB, statistics_scaling
from landcover.data.tilestore import TileRecord, TileStore, tile_name, write_index
from landcover.evaluation.card import card_content
from landcover.inference import runtimes
from landcover.inference.blending import SlidingWindows, model_input
from landcover.inference.export import (
    INT8_GATE_KEY,
    Int8Gate,
    compare,
    evenly_spaced,
    fp32_convolution_names,
    model_metadata,
    onnx_bytes,
    read_int8_gate,
    read_onnx_interface,
    read_onnx_metadata,
    with_metadata,
)
from landcover.inference.probabilities import trained_model_probabilities
from landcover.inference.runtimes import (
    Runtime,
    check_predict_options,
    choose_runtime,
    int8_choice,
    onnxruntime_probabilities,
    onnxruntime_providers,
    onnxruntime_session,
    run_label,
    runtime_probabilities,
)
from landcover.io.errors import PipelineError
from landcover.io.imageio import read_index_png, read_rgb, write_png
from landcover.io.outputs import STAGING_NAME
from landcover.io.params import PREDICT_DEFAULTS, ExportParams, PredictParams, load_params, read_section
from landcover.model.checkpoint import (
    ModelInterface,
    TrainedModel,
    checkpoint_config,
    load_trained_model,
    read_model_interface,
    save_checkpoint,
)
from landcover.model.model import build_model
from stages import card as card_stage
from stages import export as export_stage
from stages import predict as predict_stage
from tests.conftest import REPO, write_params
from tests.optional import need_group

ENCODER, TILE = "resnet18", 32
TABLE = ClassTable.deepglobe()
CPU, GPU = torch.device("cpu"), torch.device("cuda", 1)
INTERFACE = ModelInterface(TABLE, UINT8_RGB, TILE, "0" * 64)

# Built in a fresh process: the same seed must give the same bytes there as here, metadata included.
EXPORT_IN_A_PROCESS = f"""
import hashlib, sys, torch
from landcover.model.checkpoint import ModelInterface, TrainedModel
from landcover.inference.export import model_metadata, onnx_bytes, with_metadata
from landcover.data.scaling import UINT8_RGB
from landcover.model.model import build_model
from landcover.data.palette import ClassTable
torch.manual_seed(0)
model = build_model("{ENCODER}", 7).eval()
trained = TrainedModel(model, ClassTable.deepglobe(), UINT8_RGB, {TILE})
interface = ModelInterface(ClassTable.deepglobe(), UINT8_RGB, {TILE}, "0" * 64)
print(hashlib.md5(with_metadata(onnx_bytes(trained), model_metadata(interface, "fp32", {{"opset": 17}}))).hexdigest())
"""


def tiny_trained(seed: int = 0) -> TrainedModel:
    torch.manual_seed(seed)
    model = build_model(ENCODER, len(TABLE)).eval()
    return TrainedModel(model, TABLE, UINT8_RGB, TILE)


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
    here = hashlib.md5(with_metadata(onnx_bytes(trained), model_metadata(INTERFACE, "fp32", {"opset": 17}))).hexdigest()
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
        SlidingWindows(fn, len(TABLE), 32, 0.25, 3).probabilities(image).argmax(axis=0)
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


def write_tiny_project(root, trained: TrainedModel, **export) -> dict:
    """A checkpoint, tiles (two 64 px images, 32 px tiles), their labels and splits, as the stages write them;
    `export` params replace the repository's."""
    rng = np.random.default_rng(0)
    (root / "tiles" / "images").mkdir(parents=True)
    (root / "encoded" / "masks").mkdir(parents=True)
    (root / "splits").mkdir()
    records = {}
    for image_id in ("1", "2"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            root / "tiles" / "images" / f"{image_id}.png"
        )
        write_png(root / "encoded" / "masks" / f"{image_id}.png", rng.integers(0, len(TABLE), (64, 64), dtype=np.uint8))
        records[image_id] = [
            TileRecord(tile_name(image_id, y, x), image_id, y, x, TILE, 64, 64) for y in (0, 32) for x in (0, 32)
        ]
    TABLE.to_csv(root / "tiles" / "class_dict.csv")
    write_index(root / "tiles" / "index.csv", records["1"] + records["2"])
    write_index(root / "splits" / "train.csv", records["1"])
    write_index(root / "splits" / "test.csv", records["2"])
    save_checkpoint(
        root / "best.pt",
        config=checkpoint_config(ENCODER, TABLE, TILE, trained.scaling),
        model=trained.model.state_dict(),
        params={"model.encoder": ENCODER, "train.lr": 0.003},
        epoch=3,
        best_miou=0.5,
    )
    params = write_params(root / "params.yaml", export={"check_tiles": 4, "calibration_tiles": 4, **export})
    return {"root": root, "params": params}


def export_args(root) -> list[str]:
    return [
        "--checkpoint",
        str(root / "best.pt"),
        "--tiles",
        str(root / "tiles"),
        "--encoded",
        str(root / "encoded"),
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
    # the int8 gate's figures: agreement, and both models' mIoU on the check tiles' labels
    assert report["onnxruntime_int8"]["pixels"] == 4 * TILE * TILE
    miou = report["miou_land"]
    assert set(miou) == {"pytorch_fp32", "onnxruntime_int8", "drop"}
    assert miou["drop"] == pytest.approx(miou["pytorch_fp32"] - miou["onnxruntime_int8"])
    assert report["quantization"]["reduce_range"] is True and report["quantization"]["calibration_tiles"] == 4


def test_each_exported_model_knows_its_classes_normalisation_tile_size_and_checkpoint(exported):
    root = exported["root"]
    from_checkpoint = read_model_interface(root / "best.pt")
    assert from_checkpoint.checkpoint_sha256 == hashlib.sha256((root / "best.pt").read_bytes()).hexdigest()
    export_params = dataclasses.asdict(read_section(load_params(exported["params"]), "export", ExportParams))
    for name, weights in (("model.onnx", "fp32"), ("model.int8.onnx", "int8")):
        path = root / "export" / name
        assert (
            read_onnx_interface(path)
            == from_checkpoint
            == ModelInterface(TABLE, UINT8_RGB, TILE, from_checkpoint.checkpoint_sha256)
        )
        metadata = read_onnx_metadata(path)
        assert metadata["weights"] == weights
        assert json.loads(metadata["class_names"]) == list(TABLE.names)
        recorded = json.loads(metadata["export_params"])
        assert {key: recorded[key] for key in export_params} == export_params
    int8_settings = json.loads(read_onnx_metadata(root / "export" / "model.int8.onnx")["export_params"])
    assert int8_settings["quantization"]["reduce_range"] is True


def convolution_weight_sources(path) -> list[str]:
    """For each convolution of an ONNX model, in graph order, what makes its weight input: `DequantizeLinear`
    for an int8 weight (QDQ), `initializer` for an fp32 one."""
    import onnx

    graph = onnx.load(str(path)).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    return [made_by.get(node.input[1], "initializer") for node in graph.node if node.op_type == "Conv"]


def test_the_int8_model_keeps_its_first_and_last_convolutions_fp32_and_the_rest_int8(exported):
    """Quantization.fp32_convolutions: the convolution that sees raw pixels and the classifier stay fp32."""
    sources = convolution_weight_sources(exported["root"] / "export" / "model.int8.onnx")
    assert len(sources) > 3
    assert sources[0] == sources[-1] == "initializer"
    assert set(sources[1:-1]) == {"DequantizeLinear"}
    recorded = json.loads(read_onnx_metadata(exported["root"] / "export" / "model.int8.onnx")["export_params"])
    assert recorded["quantization"]["fp32_convolutions"] == ["first", "last"]


def test_fp32_convolutions_name_the_graphs_first_and_last_convolution(onnx_file):
    import onnx

    convolutions = [node.name for node in onnx.load(str(onnx_file)).graph.node if node.op_type == "Conv"]
    assert fp32_convolution_names(onnx_file, ("first", "last")) == sorted([convolutions[0], convolutions[-1]])
    assert fp32_convolution_names(onnx_file, ("last",)) == [convolutions[-1]]
    assert fp32_convolution_names(onnx_file, ()) == []


# A model of 4 uint16 bands (blue, green, red, near-infrared), standardised by their statistics
UINT16_BANDS = statistics_scaling((1, 2, 3, 4), "uint16", (900.0, 1100.0, 1000.0, 2500.0), (300.0, 350.0, 400.0, 900.0))


def uint16_image(seed: int, side: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, (side, side, 4), dtype=np.uint16)


@pytest.fixture(scope="module")
def exported_uint16(tmp_path_factory):
    """The export stage run on a 4-band uint16 model and tiles (the store's images replaced by uint16 ones)."""
    torch.manual_seed(0)
    trained = TrainedModel(build_model(ENCODER, len(TABLE), in_channels=4).eval(), TABLE, UINT16_BANDS, TILE)
    project = write_tiny_project(tmp_path_factory.mktemp("uint16"), trained)
    images = {"1": uint16_image(1), "2": uint16_image(2)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TileStore, "whole_image", lambda store, record: images[record.image_id])
        export_stage.main(export_args(project["root"]))
    return project | {"trained": trained, "images": images}


def test_a_4_band_uint16_model_exports_with_float32_input_and_its_scaling_inside(exported_uint16):
    root, trained = exported_uint16["root"], exported_uint16["trained"]
    report = json.loads((root / "export.json").read_text())
    assert report["onnxruntime_fp32"]["argmax_agreement"] >= 0.999 and report["onnxruntime_fp32"]["max_abs_diff"] < 1e-4
    assert report["onnxruntime_int8"]["argmax_agreement"] >= 0.9  # the int8 check ran, calibrated on uint16 tiles
    for name in ("model.onnx", "model.int8.onnx"):
        path = root / "export" / name
        assert read_onnx_interface(path).scaling == UINT16_BANDS == read_model_interface(root / "best.pt").scaling
        assert json.loads(read_onnx_metadata(path)["scaling"]) == UINT16_BANDS.to_config()
        (graph_input,) = onnxruntime_session(path).get_inputs()
        assert graph_input.type == "tensor(float)" and graph_input.shape[3] == 4
    # raw band values in: the graph scales them as PyTorch does
    image = exported_uint16["images"]["2"]
    batch = torch.from_numpy(image[None, :32, :32])
    expected = trained_model_probabilities(trained, CPU, "fp32", tta=False)(batch)
    actual = onnxruntime_probabilities(root / "export" / "model.onnx")(
        torch.from_numpy(model_input(image[None, :32, :32]))
    )
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_whole_4_band_uint16_images_predict_alike_in_torch_and_onnxruntime(exported_uint16):
    """The predict stage's path: sliding windows over an H x W x 4 uint16 array, for every runtime."""
    root, image = exported_uint16["root"], exported_uint16["images"]["1"][:48]
    maps = [
        SlidingWindows(fn, len(TABLE), 32, 0.25, 3).probabilities(image).argmax(axis=0)
        for fn in (
            trained_model_probabilities(exported_uint16["trained"], CPU, "fp32", False),
            onnxruntime_probabilities(root / "export" / "model.onnx"),
        )
    ]
    assert (maps[0] == maps[1]).mean() >= 0.999


def test_the_card_of_a_4_band_uint16_model_gives_its_bands_type_and_scaling(exported_uint16):
    root = exported_uint16["root"]
    training = {"encoder": ENCODER, "best_epoch": 1, "best_val_miou_land": 0.5, "params": {}}
    models = {"fp32": root / "export" / "model.onnx"}
    card = card_content(read_model_interface(root / "best.pt"), training, {}, {}, {}, {}, "0" * 64, models)
    assert (
        card["input"]["dtype"] == "float32"
        and card["input"]["channels"] == "bands 1,2,3,4 of uint16 images, raw values"
    )
    assert card["normalisation"]["mean"] == list(UINT16_BANDS.mean) and card["normalisation"]["low"] == [0.0] * 4
    assert card["normalisation"]["applied"] == "inside the model: ((x - low) / (high - low) - mean) / std per band"


def test_a_uint8_model_keeps_its_uint8_rgb_input(onnx_file):
    (graph_input,) = onnxruntime_session(onnx_file).get_inputs()
    assert graph_input.type == "tensor(uint8)" and graph_input.shape[3] == 3


def test_an_export_without_a_recorded_scaling_reads_as_uint8_rgb(onnx_file, tmp_path):
    """Exports from before scalings were recorded took uint8 RGB, as their graphs say."""
    metadata = model_metadata(INTERFACE, "fp32", {"opset": 17})
    del metadata["scaling"]
    old = tmp_path / "old.onnx"
    old.write_bytes(with_metadata(onnx_file.read_bytes(), metadata))
    assert read_onnx_interface(old).scaling == UINT8_RGB


def test_an_onnx_file_without_the_metadata_is_refused_in_one_line(onnx_file, tmp_path):
    with pytest.raises(PipelineError, match=r"model\.onnx: has no class table in its metadata.*dvc repro export"):
        read_onnx_interface(onnx_file)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(PipelineError, match=r"broken\.onnx: not an ONNX model"):
        read_onnx_interface(tmp_path / "broken.onnx")
    with pytest.raises(PipelineError, match=r"missing\.onnx: exported model not found"):
        read_onnx_interface(tmp_path / "missing.onnx")


def identity_onnx() -> bytes:
    """The smallest ONNX model: what its metadata says is all these tests read."""
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 2, 2, 3])
    output = helper.make_tensor_value_info("probabilities", TensorProto.UINT8, [1, 2, 2, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probabilities"])], "g", [tensor], [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_checkpoint_and_onnx_metadata_record_the_class_values_and_headline(tmp_path):
    table = ClassTable(
        ("land", "sea", "cloud"), np.array([[0, 255, 0], [0, 0, 255], [9, 9, 9]]), (1, 2, 40000), (True, True, False)
    )
    config = checkpoint_config(ENCODER, table, TILE)
    assert config["class_values"] == [1, 2, 40000] and config["class_headline"] == [True, True, False]
    save_checkpoint(tmp_path / "best.pt", config=config, model={}, params={}, epoch=1)
    interface = read_model_interface(tmp_path / "best.pt")
    assert interface.table == table and interface.table.left_out == ("cloud",)
    metadata = model_metadata(interface, "fp32", {})
    assert json.loads(metadata["class_values"]) == [1, 2, 40000]
    assert json.loads(metadata["class_headline"]) == [True, True, False]
    (tmp_path / "model.onnx").write_bytes(with_metadata(identity_onnx(), metadata))
    assert read_onnx_interface(tmp_path / "model.onnx") == interface


def test_checkpoints_and_onnx_models_from_before_the_class_values_read_as_they_did(tmp_path):
    """Saved without class_values and class_headline: values 0..n-1, every class but `unknown` in the headline."""
    old_config = checkpoint_config(ENCODER, TABLE, TILE)
    del old_config["class_values"], old_config["class_headline"]
    save_checkpoint(tmp_path / "old.pt", config=old_config, model={}, params={}, epoch=1)
    interface = read_model_interface(tmp_path / "old.pt")
    assert interface.table == TABLE == ClassTable.deepglobe()
    assert interface.table.values == tuple(range(7)) and interface.table.left_out == ("unknown",)
    old_metadata = model_metadata(interface, "fp32", {})
    del old_metadata["class_values"], old_metadata["class_headline"]
    (tmp_path / "old.onnx").write_bytes(with_metadata(identity_onnx(), old_metadata))
    assert read_onnx_interface(tmp_path / "old.onnx") == interface
    # a class table the metadata cannot hold is refused naming the file
    bad = model_metadata(interface, "fp32", {}) | {"class_values": json.dumps([0, 1, 2, 3, 4, 5, 5])}
    (tmp_path / "bad.onnx").write_bytes(with_metadata(identity_onnx(), bad))
    with pytest.raises(PipelineError, match=r"bad\.onnx: its metadata is malformed \(class table: label value 5"):
        read_onnx_interface(tmp_path / "bad.onnx")


def test_int8_export_is_deterministic_and_stages_its_scratch_beside_its_outputs(exported, tmp_path, monkeypatch):
    """Calibration on the same tiles gives the same int8 bytes (so dvc.lock does not change on a rerun); scratch
    files (quantization's among them) go in a staging folder beside the outputs, none in the temp folder."""
    root = exported["root"]
    args = export_args(root)
    args[args.index("--output") + 1] = str(tmp_path / "again")
    args[args.index("--report") + 1] = str(tmp_path / "again.json")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # TMPDIR, as tempfile read it
    real_quantize, seen = export_stage.quantize_int8, []

    def watched_quantize(fp32_model, output, calibration, settings=export_stage.QUANTIZATION):
        def batches():  # read while quantize_static runs: its scratch folder exists then
            seen.append((output.parent, sorted(path.name for path in output.parent.iterdir())))
            yield from calibration

        real_quantize(fp32_model, output, batches(), settings)

    monkeypatch.setattr(export_stage, "quantize_int8", watched_quantize)
    export_stage.main(args)
    for name in ("model.onnx", "model.int8.onnx"):
        assert (tmp_path / "again" / name).read_bytes() == (root / "export" / name).read_bytes(), name
    [(staging, inside)] = seen
    assert staging.parent == tmp_path / "again" and STAGING_NAME.fullmatch(staging.name)["output"] == "model.int8.onnx"
    assert any(name.startswith(".quantize-") for name in inside), inside
    assert list((tmp_path / "tmp").iterdir()) == []
    assert sorted(path.name for path in (tmp_path / "again").iterdir()) == ["model.int8.onnx", "model.onnx"]


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
    assert "below the 99.90% required by export.min_agreement" in error[0]
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())
    assert not (tmp_path / "export.json").exists()


def other_model_as_int8(other: TrainedModel):
    """A stand-in for quantize_int8 that writes another model: an int8 model that disagrees."""

    def quantize(fp32_model, output, calibration, settings=None):
        output.write_bytes(onnx_bytes(other))

    return quantize


def run_export_quietly(root) -> str:
    """The export stage's standard output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        export_stage.main(export_args(root))
    return printed.getvalue()


@pytest.fixture(scope="module")
def gate_failed(trained, tmp_path_factory):
    """An export whose int8 model (another model's graph) fails its agreement gate."""
    project = write_tiny_project(tmp_path_factory.mktemp("gate"), trained)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_stage, "quantize_int8", other_model_as_int8(tiny_trained(seed=1)))
        patch.setattr(runtimes, "bf16_supported", lambda device: False)
        printed = run_export_quietly(project["root"])
    return project | {"printed": printed}


def test_an_int8_model_that_fails_its_gate_is_written_with_its_verdict(gate_failed):
    root = gate_failed["root"]
    written = sorted(path.name for path in (root / "export").iterdir() if not path.name.startswith("model_card"))
    assert written == ["model.int8.onnx", "model.onnx"]
    verdict = json.loads((root / "export.json").read_text())["int8_gate"]
    assert verdict["passed"] is False and len(verdict["reasons"]) >= 1
    assert verdict["reasons"][0].startswith("agreement ")
    assert verdict["reasons"][0].endswith("% below export.min_int8_agreement 99.00%")
    assert read_int8_gate(root / "export" / "model.int8.onnx") == Int8Gate(False, tuple(verdict["reasons"]))
    assert INT8_GATE_KEY not in read_onnx_metadata(root / "export" / "model.onnx")
    failed = [line for line in gate_failed["printed"].splitlines() if "failed its gate" in line]
    assert len(failed) == 1 and verdict["reasons"][0] in failed[0]
    assert failed[0].endswith("predict (predict.int8 true) runs the fp32 model on this CPU instead")


def test_a_passing_int8_model_carries_its_verdict_and_one_without_one_counts_as_passed(exported, tmp_path):
    import onnx

    root = exported["root"]
    assert json.loads((root / "export.json").read_text())["int8_gate"] == {"passed": True, "reasons": []}
    assert read_int8_gate(root / "export" / "model.int8.onnx") == Int8Gate(True)
    # an int8 model exported before verdicts were recorded (gated by a check that stopped the export)
    proto = onnx.load(str(root / "export" / "model.int8.onnx"))
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if entry.key != INT8_GATE_KEY]
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, dict(kept))
    (tmp_path / "model.int8.onnx").write_bytes(proto.SerializeToString())
    assert INT8_GATE_KEY not in read_onnx_metadata(tmp_path / "model.int8.onnx")
    assert read_int8_gate(tmp_path / "model.int8.onnx") == Int8Gate(True)
    assert int8_choice(tmp_path, True).int8 and int8_choice(tmp_path, "required").int8


@pytest.mark.parametrize("native_bf16", [False, True])
def test_where_the_int8_model_failed_auto_runs_by_the_cpus_features(gate_failed, monkeypatch, native_bf16):
    """torch where the CPU has native bf16, else onnxruntime with the fp32 model; an explicit ONNX runtime runs
    the fp32 model."""
    monkeypatch.setattr(runtimes, "bf16_supported", lambda device: native_bf16)
    root, params = gate_failed["root"], predict_params()
    runtime = choose_runtime(params, CPU, root / "best.pt", None, root / "export")
    expected = ("torch", root / "best.pt") if native_bf16 else ("onnxruntime", root / "export" / "model.onnx")
    assert (runtime.name, runtime.model, runtime.auto) == (*expected, True)
    label = run_label(params, runtime)
    assert "; model.int8.onnx failed its int8 gate (agreement " in label
    instead = "torch runs instead, this CPU having native bf16" if native_bf16 else "the fp32 model runs instead"
    assert label.endswith(instead)
    explicit = choose_runtime(predict_params(runtime="onnxruntime"), CPU, root / "best.pt", None, root / "export")
    assert (explicit.name, explicit.model) == ("onnxruntime", root / "export" / "model.onnx")
    assert run_label(params, explicit).endswith("the fp32 model runs instead")


def predict_stage_args(root, output, params) -> list[str]:
    return [
        *("--checkpoint", str(root / "best.pt"), "--tiles", str(root / "tiles")),
        *("--split", str(root / "splits" / "test.csv"), "--params", str(params)),
        *("--export", str(root / "export"), "--output", str(output)),
    ]


def test_predict_runs_the_fp32_model_where_int8_failed_and_required_stops(gate_failed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runtimes, "bf16_supported", lambda device: False)
    root = gate_failed["root"]
    params = write_params(tmp_path / "params.yaml", predict={"window": 32, "batch_size": 4, "int8": True})
    predict_stage.main(predict_stage_args(root, tmp_path / "predicted", params))
    assert sorted(path.name for path in (tmp_path / "predicted").iterdir()) == ["2.png", "2_colour.png"]
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "onnxruntime, model.onnx (predict.runtime auto)" in summary
    assert "model.int8.onnx failed its int8 gate (agreement " in summary and "the fp32 model runs instead" in summary
    required = write_params(tmp_path / "required.yaml", predict={"window": 32, "int8": "required"})
    with pytest.raises(SystemExit) as exit_info:
        predict_stage.run_stage(lambda: predict_stage.main(predict_stage_args(root, tmp_path / "refused", required)))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: params: predict.int8 required, but ")
    assert "failed its int8 gate at export (agreement " in error[0]
    assert not (tmp_path / "refused").exists()


def test_the_card_says_why_the_int8_model_is_not_used(gate_failed, tmp_path):
    root = gate_failed["root"]
    (tmp_path / "test.json").write_text(json.dumps({"miou_land": 0.61}))
    for name in ("test_intervals", "test_low", "test_high"):
        (tmp_path / f"{name}.json").write_text(json.dumps({}))
    card_stage.main(card_args(root, tmp_path / "test.json", gate_failed["params"]))
    card = json.loads((root / "export" / "model_card.json").read_text())
    assert card["int8_model"]["used"] is False
    assert card["int8_model"]["why"].startswith("it failed its int8 gate at export: agreement ")
    markdown = (root / "export" / "model_card.md").read_text()
    assert "The int8 model is not used: it failed its int8 gate at export: agreement " in markdown


def test_predict_int8_takes_true_false_or_required():
    assert [predict_params(int8=value).int8 for value in (True, False, "required")] == [True, False, "required"]
    for bad in ("yes", 1, None):
        with pytest.raises(PipelineError, match=r"^params: predict\.int8 must be true, false or required, got "):
            predict_params(int8=bad)
    assert PredictParams(256, 0.25, 8, False, "auto", False).int8 is True  # the code's default is params.yaml's


def label_tiles_with_the_models_classes(root, trained: TrainedModel) -> None:
    """Each image's labels made the model's own classes, tile by tile: PyTorch fp32 scores an mIoU of 1 there."""
    model = trained_model_probabilities(trained, CPU, "fp32", tta=False)
    for image_id in ("1", "2"):
        image = read_rgb(root / "tiles" / "images" / f"{image_id}.png")
        labels = np.zeros(image.shape[:2], dtype=np.uint8)
        for y in (0, TILE):
            for x in (0, TILE):
                window = torch.from_numpy(np.ascontiguousarray(image[None, y : y + TILE, x : x + TILE]))
                labels[y : y + TILE, x : x + TILE] = model(window).argmax(dim=1)[0].numpy()
        write_png(root / "encoded" / "masks" / f"{image_id}.png", labels)


def test_an_int8_model_losing_more_miou_than_allowed_fails_its_gate(trained, tmp_path, monkeypatch):
    write_tiny_project(tmp_path, trained, min_int8_agreement=0.0)
    label_tiles_with_the_models_classes(tmp_path, trained)
    labels = read_index_png(tmp_path / "encoded" / "masks" / "2.png")
    assert len(np.unique(labels)) > 1  # the test tiles' labels are more than one class
    monkeypatch.setattr(export_stage, "quantize_int8", other_model_as_int8(tiny_trained(seed=1)))
    run_export_quietly(tmp_path)
    [reason] = json.loads((tmp_path / "export.json").read_text())["int8_gate"]["reasons"]
    assert reason.startswith("mIoU (land) drop ") and reason.endswith(" above export.max_int8_miou_drop 0.005")
    assert read_int8_gate(tmp_path / "export" / "model.int8.onnx") == Int8Gate(False, (reason,))


def card_args(root, test_metrics, params) -> list[str]:
    return [
        *("--checkpoint", str(root / "best.pt"), "--fp32", str(root / "export" / "model.onnx")),
        *("--int8", str(root / "export" / "model.int8.onnx"), "--test", str(test_metrics)),
        *("--test-intervals", str(test_metrics.parent / "test_intervals.json")),
        *("--test-low", str(test_metrics.parent / "test_low.json")),
        *("--test-high", str(test_metrics.parent / "test_high.json")),
        *("--export-report", str(root / "export.json"), "--tiles", str(root / "tiles")),
        *("--splits", str(root / "splits"), "--params", str(params)),
    ]


def test_card_has_classes_colours_normalisation_and_the_size_rule(exported):
    root = exported["root"]
    (root / "test.json").write_text(
        json.dumps({"miou_land": 0.61, "miou": 0.55, "mean_dice": 0.7, "pixel_accuracy": 0.8})
    )
    trust = "12 test images resampled with replacement; the score of another sample of images like these"
    intervals = {"level": 0.95, "resamples": 1000, "seed": 0, "images": 12, "trust": trust}
    (root / "test_intervals.json").write_text(json.dumps(intervals))
    (root / "test_low.json").write_text(json.dumps({"miou_land": 0.52, "miou": None}))
    (root / "test_high.json").write_text(json.dumps({"miou_land": 0.68, "miou": None}))
    card_stage.main(card_args(root, root / "test.json", exported["params"]))
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
    assert "| 4 | water | 4 | (0, 0, 255) | yes |" in markdown and "| 6 | unknown | 6 | (0, 0, 0) | no |" in markdown
    assert "multiples of 16" in markdown and "0.6100" in markdown and "land cover in 7 classes" in markdown
    assert "| miou_land | 0.6100 | 0.5200 to 0.6800 |" in markdown and "| miou | 0.5500 | - |" in markdown
    assert f"1000 bootstrap resamples of the test split: {trust}." in markdown
    assert card["test_intervals"]["miou_land"] == {"low": 0.52, "high": 0.68}
    assert [(c["value"], c["headline"]) for c in card["classes"]] == [(i, i != 6) for i in range(7)]


def predict_section(**values) -> dict:
    return {"predict": {**PREDICT_DEFAULTS, **values}}


def predict_params(**values) -> PredictParams:
    return read_section(predict_section(**values), "predict", PredictParams)


def test_predict_runtime_is_checked_against_its_registry():
    with pytest.raises(
        PipelineError,
        match=r"^params: predict\.runtime must be one of auto, torch, onnxruntime, openvino, got 'tensorrt'$",
    ):
        check_predict_options(predict_params(runtime="tensorrt"))


def test_the_default_runtime_is_auto_and_runs_the_int8_onnx_model_on_a_cpu(exported):
    """On a machine without a GPU auto is exactly the former default, onnxruntime with the int8 model."""
    root = exported["root"]
    default = read_section(load_params(REPO / "params.yaml"), "predict", PredictParams)
    assert default.runtime == "auto" and default.int8
    runtime = choose_runtime(default, CPU, root / "best.pt", None, root / "export")
    assert (runtime.name, runtime.model, runtime.device, runtime.auto) == (
        "onnxruntime",
        root / "export" / "model.int8.onnx",
        CPU,
        True,
    )
    assert run_label(default, runtime).endswith("onnxruntime, model.int8.onnx (predict.runtime auto), cpu")


def test_auto_runs_the_checkpoint_in_torch_on_a_gpu(exported):
    root = exported["root"]
    runtime = choose_runtime(predict_params(), GPU, root / "best.pt", None, root / "export")
    assert (runtime.name, runtime.model, runtime.device) == ("torch", root / "best.pt", GPU)
    assert runtime.interface == read_model_interface(root / "best.pt")


def test_auto_runs_a_checkpoint_without_an_export_in_torch(exported, tmp_path):
    root = exported["root"]
    runtime = choose_runtime(predict_params(), CPU, root / "best.pt", None, tmp_path / "no-export-here")
    assert (runtime.name, runtime.model, runtime.device) == ("torch", root / "best.pt", CPU)


def test_onnxruntime_uses_its_cuda_provider_where_it_is_installed(exported, monkeypatch):
    import onnxruntime

    root, int8 = exported["root"], exported["root"] / "export" / "model.int8.onnx"
    assert onnxruntime_providers(GPU) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnxruntime_providers(CPU) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_runtime(predict_params(runtime="onnxruntime"), GPU, None, int8, root).device == CPU
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    # an ONNX model alone: auto runs it in onnxruntime, on the GPU through the CUDA provider
    alone = choose_runtime(predict_params(), GPU, None, int8, root / "no-export-folder")
    assert (alone.name, alone.model, alone.device) == ("onnxruntime", int8, GPU)


def test_torch_is_one_setting_with_int8_left_on(exported):
    """-S predict.runtime=torch alone: predict.int8 applies to the ONNX runtimes and does not block torch."""
    root = exported["root"]
    runtime = choose_runtime(predict_params(runtime="torch", int8=True), CPU, root / "best.pt", None, root / "export")
    assert (runtime.name, runtime.model) == ("torch", root / "best.pt")


def test_torch_without_a_checkpoint_says_what_to_give(exported):
    int8 = exported["root"] / "export" / "model.int8.onnx"
    with pytest.raises(PipelineError, match=r"model\.int8\.onnx: predict\.runtime torch runs a checkpoint"):
        choose_runtime(predict_params(runtime="torch"), CPU, None, int8, exported["root"])


def test_each_process_gets_its_share_of_the_cores(exported, onnx_file, monkeypatch):
    assert onnxruntime_session(onnx_file, threads=1).get_session_options().intra_op_num_threads == 1
    threads: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    root = exported["root"]
    runtime = Runtime("torch", root / "best.pt", read_model_interface(root / "best.pt"), CPU, threads=3)
    runtime_probabilities(runtime, predict_params(runtime="torch", precision="fp32"))
    assert threads == [3]
    assert run_label(predict_params(runtime="torch", precision="fp32"), runtime).endswith("torch, fp32, cpu, 3 threads")


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory):
    """A checkpoint the exported models did not come from: the same classes, other weights."""
    path = tmp_path_factory.mktemp("other") / "other.pt"
    config = checkpoint_config(ENCODER, TABLE, TILE)
    save_checkpoint(path, config=config, model=tiny_trained(seed=1).model.state_dict(), params={}, epoch=1)
    return path


def test_an_export_of_another_checkpoint_is_refused_naming_both_files(exported, other_checkpoint):
    """predict --checkpoint other.pt with the default runtime would run models/export/model.int8.onnx."""
    root, int8 = exported["root"], exported["root"] / "export" / "model.int8.onnx"
    for runtime, model in (("auto", None), ("onnxruntime", None), ("torch", int8), ("auto", int8)):
        with pytest.raises(PipelineError) as error:
            choose_runtime(predict_params(runtime=runtime), CPU, other_checkpoint, model, root / "export")
        message = str(error.value)
        assert message.startswith(f"{int8}: exported from another checkpoint than {other_checkpoint} (sha256 ")
        assert "\n" not in message
    # the checkpoint it came from passes
    assert choose_runtime(predict_params(), CPU, root / "best.pt", int8, root / "export").model == int8


def test_the_predict_stage_runs_only_the_export_of_its_checkpoint(exported, other_checkpoint, tmp_path, capsys):
    root = exported["root"]
    params = write_params(tmp_path / "params.yaml", predict={"window": 32, "batch_size": 4})
    common = ["--tiles", str(root / "tiles"), "--split", str(root / "splits" / "test.csv"), "--params", str(params)]
    common += ["--export", str(root / "export")]
    with pytest.raises(SystemExit) as exit_info:
        predict_stage.run_stage(
            lambda: predict_stage.main(
                ["--checkpoint", str(other_checkpoint), "--output", str(tmp_path / "refused"), *common]
            )
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(other_checkpoint) in error[0] and "model.int8.onnx" in error[0]
    assert not (tmp_path / "refused").exists()
    predict_stage.main(["--checkpoint", str(root / "best.pt"), "--output", str(tmp_path / "predicted"), *common])
    assert sorted(path.name for path in (tmp_path / "predicted").iterdir()) == ["2.png", "2_colour.png"]
    assert "onnxruntime, model.int8.onnx (predict.runtime auto), cpu" in capsys.readouterr().out


def mapping_args(model_args: list[str], image, out, params) -> list[str]:
    return [*model_args, "--input", str(image), "--output", str(out), "--params", str(params)]


def test_mapping_runs_from_an_exported_model_alone(exported, tmp_path, capsys):
    """The registry's ONNX artifact on its own: classes and colours come from its metadata, no checkpoint."""
    int8 = tmp_path / "model.int8.onnx"
    int8.write_bytes((exported["root"] / "export" / "model.int8.onnx").read_bytes())
    image = tmp_path / "scene.png"
    write_png(image, np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    params = write_params(tmp_path / "params.yaml", predict={"window": 32, "batch_size": 4})
    map_command.main(mapping_args(["--model", str(int8)], image, tmp_path / "out", params))
    classes = read_index_png(tmp_path / "out" / "scene.png")
    colours = read_rgb(tmp_path / "out" / "scene_colour.png")
    np.testing.assert_array_equal(colours, TABLE.colours[classes])
    assert "onnxruntime, model.int8.onnx (predict.runtime auto), cpu" in capsys.readouterr().out


def test_mapping_with_a_mismatched_checkpoint_fails_in_one_line(exported, other_checkpoint, tmp_path, capsys):
    image = tmp_path / "scene.png"
    write_png(image, np.zeros((32, 32, 3), dtype=np.uint8))
    params = write_params(tmp_path / "params.yaml", predict={"window": 32})
    model_args = ["--checkpoint", str(other_checkpoint), "--export", str(exported["root"] / "export")]
    with pytest.raises(SystemExit) as exit_info:
        map_command.run_stage(lambda: map_command.main(mapping_args(model_args, image, tmp_path / "out", params)))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and str(other_checkpoint) in error[0]
    assert str(exported["root"] / "export" / "model.int8.onnx") in error[0]
    assert not (tmp_path / "out").exists()


def test_mapping_without_a_model_says_which_flags_give_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        map_command.main(["--input", str(tmp_path / "scene.png"), "--output", str(tmp_path / "out")])
    assert "give the model: --checkpoint (a .pt checkpoint), --model (an exported .onnx), or both" in (
        capsys.readouterr().err
    )


def test_openvino_missing_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(
        PipelineError, match=r"predict\.runtime openvino needs the openvino package.*make install-runtime"
    ):
        choose_runtime(predict_params(runtime="openvino"), CPU, tmp_path / "never-read.pt", None, tmp_path)


def test_onnxruntime_without_an_export_says_which_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"model\.int8\.onnx: exported model not found; run the export stage"):
        choose_runtime(predict_params(runtime="onnxruntime"), CPU, tmp_path / "never-read.pt", None, tmp_path)


def test_a_checkpoint_round_trip_exports_the_same_bytes(exported, trained):
    """The export stage loads best.pt: the loaded model exports exactly as the one saved (the metadata added)."""
    root = exported["root"]
    loaded = load_trained_model(root / "best.pt")
    export_params = dataclasses.asdict(read_section(load_params(exported["params"]), "export", ExportParams))
    metadata = model_metadata(read_model_interface(root / "best.pt"), "fp32", export_params)
    assert with_metadata(onnx_bytes(loaded), metadata) == (root / "export" / "model.onnx").read_bytes()


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
    need_group("runtime")
    from landcover.inference.runtimes import openvino_probabilities

    reference = trained_model_probabilities(trained, torch.device("cpu"), precision="fp32", tta=False)
    agreement = compare(reference, openvino_probabilities(onnx_file), iter([random_batch(2, 32).numpy()]))
    assert agreement.argmax_agreement >= 0.99 and agreement.max_abs_diff < 0.1
