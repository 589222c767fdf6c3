"""The trained model as a portable file: ONNX export, its check against PyTorch, int8 quantization.

The exported graph is self-contained: it takes batches of the model's bands as predict hands them
to every runtime (N, H, W, bands; H and W multiples of 16, batch, height and width dynamic), uint8
for a model of uint8 images (DeepGlobe's RGB), float32 raw band values for any other type (uint16
and int16 convert to float32 exactly); scales them as the checkpoint's BandScaling says, runs
DeepLabV3+, divides the logits by the checkpoint's calibration temperature (where it is not 1.0) and
returns softmax probabilities (N, C, H, W). So a user of the file needs no normalisation or
calibration code, and every runtime sees the same graph.

Each file carries what using it takes in its `metadata_props` (model_metadata): the class
table, the bands and their scaling, the training tile size, the calibration temperature, the sha256
of the checkpoint it was exported from and the export params, so an exported model is usable on its
own (read_onnx_interface) and a mismatched checkpoint is refused.

Exports are byte-identical across runs and processes (the legacy TorchScript-based exporter names
nodes by their place in the module tree; a test checks it), so DVC's lock does not change when
the pipeline is reproduced. The int8 model is calibrated on a fixed, evenly spaced subset of the
training tiles (MinMax calibration: the same tiles give the same bytes).
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landcover.data.scaling import BandScaling
from landcover.data.tilestore import TileRecord, crop, group_by_image
from landcover.io.errors import PipelineError
from landcover.io.params import OUTPUT_STRIDE_MULTIPLE
from landcover.model.checkpoint import ModelInterface, TrainedModel, interface_from_config
from landcover.model.model import normalise

INPUT_NAME, OUTPUT_NAME = "image", "probabilities"
OPSET = 17

METADATA_FORMAT = "1"  # the layout of model_metadata's keys; read_onnx_interface refuses any other


class ProbabilityModel(nn.Module):
    """NHWC bands (uint8, or float32 raw values) -> float32 NCHW softmax probabilities: scaling, the calibration
    temperature and softmax inside the graph. A temperature of 1.0 adds no node: the graph of an uncalibrated
    checkpoint is the one exported before temperatures existed."""

    def __init__(self, trained: TrainedModel) -> None:
        super().__init__()
        self.model = trained.model
        self.scaling = trained.scaling
        self.temperature = float(trained.temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(normalise(images, self.scaling))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits.softmax(dim=1)


def input_example(scaling: BandScaling, side: int = 64) -> torch.Tensor:
    """A batch of one zero image as the exported model takes it: its bands, in its input type."""
    return torch.zeros(1, side, side, scaling.channels, dtype=getattr(torch, scaling.input_dtype))


def onnx_bytes(trained: TrainedModel, opset: int = OPSET) -> bytes:
    """The ONNX serialisation of a trained model (CPU, fp32), with dynamic batch, height and width."""
    wrapper = ProbabilityModel(trained).eval().cpu()
    example = input_example(trained.scaling)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # dynamo=False: the TorchScript-based exporter needs only the `onnx` package (the dynamo
        # exporter also needs onnxscript) and writes the same bytes every time.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            dynamic_axes={
                INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
                OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            },
        )
    return buffer.getvalue()


def model_metadata(interface: ModelInterface, weights: str, export_params: dict) -> dict[str, str]:
    """The metadata_props of an exported model, every value a string (lists and dicts as JSON)."""
    return {
        "landcover_format": METADATA_FORMAT,
        "class_names": json.dumps(list(interface.table.names)),  # in class index order
        "class_colours": json.dumps(interface.table.colours.tolist()),  # [r, g, b] per class
        "class_values": json.dumps(list(interface.table.values)),  # label value per class (index rasters)
        "class_headline": json.dumps(list(interface.table.headline)),  # counted in the headline mean
        # the scaling's mean and std (uint8 RGB: (pixel / 255 - mean) / std), as exports before "scaling" had them
        "mean": json.dumps(list(interface.mean)),
        "std": json.dumps(list(interface.std)),
        # the bands the input holds, their type and scaling (BandScaling.to_config); absent in older exports
        "scaling": json.dumps(interface.scaling.to_config()),
        "tile_size": str(interface.tile_size),  # the side of the tiles the model was trained on
        "checkpoint_sha256": interface.checkpoint_sha256,  # the checkpoint the weights were exported from
        # the calibration temperature the graph divides the logits by before its softmax (1.0: none)
        "temperature": repr(float(interface.temperature)),
        "weights": weights,  # fp32 | int8
        "export_params": json.dumps(export_params, sort_keys=True),  # for int8 with its quantization
    }


def with_metadata(model: bytes, metadata: dict[str, str]) -> bytes:
    """The ONNX model `model` with `metadata` in its metadata_props (replacing keys it already has; others,
    such as onnxruntime's quantization marks, are kept). The same input gives the same bytes."""
    import onnx

    proto = onnx.load_from_string(model)
    kept = [(entry.key, entry.value) for entry in proto.metadata_props if entry.key not in metadata]
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, dict(kept) | metadata)
    return proto.SerializeToString()


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props, without its weights (external data is not loaded)."""
    import onnx

    if not Path(path).is_file():
        raise PipelineError(f"{path}: exported model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and onnx's own for files that are not ONNX
        raise PipelineError(f"{path}: not an ONNX model ({' '.join(str(error).split())[:200]})") from None
    return {entry.key: entry.value for entry in proto.metadata_props}


def read_onnx_interface(path: Path) -> ModelInterface:
    """An exported model's classes, colours, bands and scaling, tile size and checkpoint, from its metadata (an
    export from before scalings were recorded takes uint8 RGB: the scaling is then UINT8_RGB)."""
    metadata = read_onnx_metadata(path)
    if metadata.get("landcover_format") != METADATA_FORMAT:
        raise PipelineError(
            f"{path}: has no class table in its metadata (not exported by this pipeline's export stage, or "
            f"by a version before it wrote one); export it again (dvc repro export)"
        )
    try:
        config = {key: json.loads(metadata[key]) for key in ("class_names", "class_colours", "mean", "std")}
        # Models exported before these keys existed have the defaults (interface_from_config)
        config |= {key: json.loads(metadata[key]) for key in ("class_values", "class_headline") if key in metadata}
        if "scaling" in metadata:
            config["scaling"] = json.loads(metadata["scaling"])
        if "temperature" in metadata:  # absent in exports from before calibration: 1.0
            config["temperature"] = float(metadata["temperature"])
        interface = interface_from_config(
            {**config, "tile_size": int(metadata["tile_size"])}, metadata["checkpoint_sha256"]
        )
    except (KeyError, ValueError, TypeError) as error:
        problem = f"{type(error).__name__}: {error}"
        raise PipelineError(f"{path}: its metadata is incomplete or malformed ({problem})") from None
    except PipelineError as error:  # a class table ClassTable refuses (a value given twice, ...)
        raise PipelineError(f"{path}: its metadata is malformed ({error})") from None
    return interface


def evenly_spaced(records: list[TileRecord], count: int) -> list[TileRecord]:
    """At most `count` records spread over the list (all of them if it is shorter): a fixed subset."""
    if len(records) <= count:
        return list(records)
    return [records[round(i * (len(records) - 1) / (count - 1))] if count > 1 else records[0] for i in range(count)]


def tile_batches(
    read_whole: Callable[[TileRecord], np.ndarray], records: list[TileRecord], batch_size: int
) -> Iterator[np.ndarray]:
    """(N, side, side, ...) batches of the tiles `records` of the whole images (or masks) `read_whole`
    gives for a tile, e.g. TileStore.whole_image, each decoded once; tiles of one size, cut to the largest
    multiple of 16 (the model's input rule) where the tile size is none. The same records give the same
    order whatever is read, so a batch of images and a batch of their class masks line up."""
    batch: list[np.ndarray] = []
    for tiles in group_by_image(records).values():
        whole = read_whole(tiles[0])
        for record in tiles:
            side = record.size // OUTPUT_STRIDE_MULTIPLE * OUTPUT_STRIDE_MULTIPLE
            batch.append(crop(whole, record)[:side, :side])
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
    if batch:
        yield np.stack(batch)


@dataclass(frozen=True)
class Agreement:
    """How closely one runtime's probabilities follow another's on the same tiles."""

    max_abs_diff: float  # largest absolute difference of any class probability at any pixel
    argmax_agreement: float  # fraction of pixels whose most probable class is the same
    pixels: int
    # The class of every pixel compared (uint8, flattened batch by batch, in the order of the batches),
    # the reference's and the candidate's: what their scores against the tiles' labels come from
    reference_classes: np.ndarray = field(repr=False, compare=False)
    candidate_classes: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement, "pixels": self.pixels}


def compare_all(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidates: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batches: Iterator[np.ndarray],
) -> dict[str, Agreement]:
    """Run the reference once and every candidate on each batch: per candidate, the largest difference, the
    argmax agreement and both class maps (flattened). One pass: the reference is the costly one."""
    largest = dict.fromkeys(candidates, 0.0)
    reference_classes: list[np.ndarray] = []
    candidate_classes: dict[str, list[np.ndarray]] = {name: [] for name in candidates}
    for batch in batches:
        tensor = torch.from_numpy(batch)
        expected = reference(tensor).float().cpu()
        reference_classes.append(expected.argmax(dim=1).to(torch.uint8).numpy().ravel())
        for name, candidate in candidates.items():
            actual = candidate(tensor).float().cpu()
            largest[name] = max(largest[name], float((expected - actual).abs().max()))
            candidate_classes[name].append(actual.argmax(dim=1).to(torch.uint8).numpy().ravel())
    if not reference_classes:
        raise PipelineError("export check: no tiles to compare on (the test split is empty)")
    expected_classes = np.concatenate(reference_classes)
    agreements = {}
    for name, classes in candidate_classes.items():
        actual_classes = np.concatenate(classes)
        same = int((expected_classes == actual_classes).sum())
        pixels = expected_classes.size
        agreements[name] = Agreement(largest[name], same / pixels, pixels, expected_classes, actual_classes)
    return agreements


def compare(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[np.ndarray],
) -> Agreement:
    """compare_all for one candidate."""
    return compare_all(reference, {"candidate": candidate}, batches)["candidate"]


def require_agreement(agreement: Agreement, minimum: float, what: str, key: str) -> None:
    """Fail the export, naming the param `key`, where `what` agrees with PyTorch on fewer pixels than `minimum`."""
    if agreement.argmax_agreement < minimum:
        raise PipelineError(
            f"export check failed: {what} agrees with PyTorch on {agreement.argmax_agreement:.4%} of "
            f"{agreement.pixels} test pixels, below the {minimum:.2%} required by {key} (largest probability "
            f"difference {agreement.max_abs_diff:.3g}); nothing was written"
        )


INT8_GATE_KEY = "int8_gate"  # the int8 model's metadata key for its gate's verdict (Int8Gate.to_json)


@dataclass(frozen=True)
class Int8Gate:
    """The int8 gate's verdict on the int8 model: whether it passed, and each reason it did not, in one line."""

    passed: bool
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def int8_gate(agreement: Agreement, drop: float | None, min_agreement: float, max_drop: float) -> Int8Gate:
    """The gate on the int8 model: argmax agreement with PyTorch fp32 of at least `min_agreement`
    (export.min_int8_agreement) and an mIoU (land) at most `max_drop` (export.max_int8_miou_drop) below its."""
    reasons = []
    if agreement.argmax_agreement < min_agreement:
        reasons.append(
            f"agreement {agreement.argmax_agreement:.2%} below export.min_int8_agreement {min_agreement:.2%}"
        )
    if drop is not None and drop > max_drop:
        reasons.append(f"mIoU (land) drop {drop:.4f} above export.max_int8_miou_drop {max_drop:g}")
    return Int8Gate(not reasons, tuple(reasons))


def read_int8_gate(path: Path) -> Int8Gate:
    """The gate's verdict an int8 model carries in its metadata; one exported before verdicts were recorded was
    gated by a check that stopped the export, so it passed."""
    recorded = read_onnx_metadata(path).get(INT8_GATE_KEY)
    if recorded is None:
        return Int8Gate(True)
    try:
        verdict = json.loads(recorded)
        return Int8Gate(bool(verdict["passed"]), tuple(str(reason) for reason in verdict["reasons"]))
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{path}: its metadata's {INT8_GATE_KEY} is malformed: {recorded[:200]!r}") from None


@dataclass(frozen=True)
class Quantization:
    """The int8 model's quantization: onnxruntime quantize_static's settings, which its metadata records."""

    # Weights quantized to 7 bits (-64..64) rather than 8. On x86 CPUs without VNNI (AVX2, AVX-512
    # without VNNI, such as this project's AMD EPYC Zen 3) onnxruntime multiplies uint8 activations by
    # int8 weights with VPMADDUBSW, which adds pairs of products into int16 and saturates:
    # 2 x 255 x 127 = 64,770 overflows 32,767, while 2 x 255 x 64 = 32,640 does not. On the default
    # run's check tiles, there, 8-bit weights agreed with PyTorch fp32 on 98.83% of pixels (largest
    # difference 0.51) and 7-bit ones on 99.58% (0.21). With VNNI (or on ARM) nothing saturates
    # either way, and 7 bits cost a little weight precision.
    reduce_range: bool = True
    quant_format: str = "QDQ"  # QuantFormat: quantize/dequantize pairs around fp32 operators
    per_channel: bool = True  # a scale per output channel of each weight
    activation_type: str = "QUInt8"  # QuantType of activations, MinMax-calibrated
    weight_type: str = "QInt8"
    # Convolutions are nearly all of the work; resize, concatenation and softmax stay fp32.
    op_types_to_quantize: tuple[str, ...] = ("Conv",)
    # Convolutions left in fp32, by their place in the graph (FP32_CONVOLUTIONS): the first sees raw
    # pixels, whose fine differences int8 rounds away, and the last makes the class scores, whose small
    # margins near a class boundary decide the argmax. Together they are about 3% of the work. On the
    # default run's model they halve int8's disagreement with fp32 (99.58% -> 99.72% agreement, mIoU
    # drop 0.0018 -> 0.0004), and they lift an undertrained model's above the gate (docs/model-artifact.md).
    fp32_convolutions: tuple[str, ...] = ("first", "last")


# Where a convolution sits among the graph's convolutions (in graph order, which ONNX keeps topological).
FP32_CONVOLUTIONS: dict[str, Callable[[list[str]], str]] = {
    "first": lambda convolutions: convolutions[0],
    "last": lambda convolutions: convolutions[-1],
}


def fp32_convolution_names(model_path: Path, places: tuple[str, ...]) -> list[str]:
    """The node names of the convolutions at `places` (FP32_CONVOLUTIONS' names) of the ONNX model at `model_path`."""
    import onnx

    convolutions = [node.name for node in onnx.load(str(model_path)).graph.node if node.op_type == "Conv"]
    if not convolutions:
        return []
    return sorted({FP32_CONVOLUTIONS[place](convolutions) for place in places})


QUANTIZATION = Quantization()  # the export stage's


def quantize_int8(
    fp32_model: Path, output: Path, calibration: Iterator[np.ndarray], settings: Quantization = QUANTIZATION
) -> None:
    """Post-training static int8 quantization (onnxruntime) with `settings`, activation ranges from the
    calibration batches; its scratch files go in a folder beside `output`, removed when it returns."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    # scratch beside the output, so a killed run leaves it where the output's own cleanup finds it, not in /tmp
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=Path(output).parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX shape inference and graph optimisation (batch norms folded into convolutions) first,
        # as onnxruntime recommends; symbolic shape inference cannot follow the dynamic sides.
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            Reader(),
            quant_format=QuantFormat[settings.quant_format],
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType[settings.activation_type],
            weight_type=QuantType[settings.weight_type],
            op_types_to_quantize=list(settings.op_types_to_quantize),
            nodes_to_exclude=fp32_convolution_names(prepared, settings.fp32_convolutions),
        )
