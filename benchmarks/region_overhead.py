"""The region engine's overhead: mapping scenes on Dask.distributed against a plain loop over the same scenes.

.venv/bin/python -m benchmarks.region_overhead [--size 2048] [--scenes 8] [--model model.int8.onnx]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.core.data.palette import ClassTable


def tiny_onnx_model(path: Path, table: ClassTable, seed: int = 0) -> Path:
    """An ONNX model with the export stage's interface (uint8 NHWC in, probabilities out, the class table in
    its metadata) whose network is one 1x1 convolution: it loads in milliseconds and maps any scene fast."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from stages.core.inference.export import INPUT_NAME, OUTPUT_NAME, model_metadata, with_metadata
    from stages.core.model.checkpoint import ModelInterface

    classes = len(table)
    weights = np.random.default_rng(seed).normal(size=(classes, 3, 1, 1)).astype(np.float32) / 64
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "weights", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes, "height", "width"])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    interface = ModelInterface(table, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 64, "0" * 64)
    Path(path).write_bytes(with_metadata(model.SerializeToString(), model_metadata(interface, "fp32", {})))
    return Path(path)
