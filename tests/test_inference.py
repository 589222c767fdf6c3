"""Sliding-window prediction stitches exactly, blends, and undoes its test-time augmentations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as nn_functional

from landcover.data.geometry import window_grid
from landcover.inference.blending import SlidingWindows, fit_window, window_weights
from landcover.inference.probabilities import DIHEDRAL, dihedral_view, undo_dihedral_view
from landcover.io.errors import PipelineError

NUM_CLASSES = 5


def labels_from_pixels(batch: torch.Tensor) -> torch.Tensor:
    """A stand-in model that reads each pixel's label from its red channel: one-hot probabilities."""
    labels = batch[..., 0].long()
    return torch.nn.functional.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()


@pytest.mark.parametrize(
    "height, width, window, overlap",
    [
        (128, 128, 64, 0.5),  # divides
        (150, 97, 64, 0.25),  # does not divide: last windows flush with the edge
        (70, 200, 96, 0.0),  # no overlap, window shrunk to fit the 70-pixel side
    ],
)
def test_stitching_a_label_reading_model_reproduces_the_labels(height, width, window, overlap):
    labels = np.random.default_rng(height).integers(0, NUM_CLASSES, (height, width)).astype(np.uint8)
    image = np.stack([labels, labels * 3, labels * 5], axis=-1)
    probs = SlidingWindows(labels_from_pixels, NUM_CLASSES, window, overlap, batch_size=3).probabilities(image)
    assert probs.shape == (NUM_CLASSES, height, width)
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=0), labels)


def test_overlapping_windows_are_blended_by_weight():
    """A model whose answer depends on the window's position: the blend must mix neighbouring windows."""
    calls = []

    def position_dependent(batch: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch.shape[0], 2, batch.shape[1], batch.shape[2])
        for i in range(batch.shape[0]):
            out[i, len(calls) % 2] = 1  # windows alternate between class 0 and class 1
            calls.append(i)
        return out

    image = np.zeros((32, 64, 3), dtype=np.uint8)
    probs = SlidingWindows(position_dependent, 2, window=32, overlap=0.5, batch_size=1).probabilities(image)
    # three windows at x = 0, 16, 32 say 0, 1, 0: columns they share mix them, the image edges do not
    assert probs[1, 16, 0] == pytest.approx(0, abs=1e-6)
    assert probs[1, 16, 63] == pytest.approx(0, abs=1e-6)
    # Column 32 is the centre of the class-1 window (x 16..47) and the first column of the class-0
    # window (x 32..63): weighted by the bump, the centre's answer dominates (uniform weights: 0.5).
    weights = window_weights(32)
    centre, border = weights[16, 16], weights[16, 0]
    assert probs[1, 16, 32] == pytest.approx(centre / (centre + border), rel=1e-5)
    assert probs[1, 16, 32] > 0.8
    # Column 31 is the last column of the class-0 window at x 0 and is 15 columns into the class-1
    # window: mirror image of column 32, so class 1 dominates there too.
    assert probs[1, 16, 31] == pytest.approx(probs[1, 16, 32], rel=1e-5)
    # Column 20, near the edge of the class-1 window and near the centre of the first class-0 window
    assert probs[1, 16, 20] < 0.5
    assert probs.dtype == np.float32 and probs.shape == (2, 32, 64)  # 7 float32 maps of a 15000 px image: 6 GB


@pytest.mark.parametrize("window", [16, 64, 256])
def test_window_weights_fall_off_toward_the_borders_but_stay_positive(window):
    weights = window_weights(window)
    middle = window // 2
    assert weights.shape == (window, window) and weights.dtype == np.float32
    assert weights[middle, middle] > weights[middle, window // 8] > weights[middle, 0] > 0
    np.testing.assert_allclose(weights, weights.T)
    np.testing.assert_allclose(weights, weights[::-1, ::-1])  # symmetric about the window's centre
    # A Gaussian of sigma = window / 4 sampled at pixel centres: about 1 in the middle, about e^-2
    # at the border's middle (e^-4 in a corner), so no pixel's weight is negligible.
    distance = np.abs(np.arange(window) + 0.5 - window / 2)
    profile = np.exp(-0.5 * (distance / (window / 4)) ** 2)
    np.testing.assert_allclose(weights, np.outer(profile, profile), rtol=1e-6)
    assert weights.max() == pytest.approx(1, abs=0.02) and weights[middle, 0] == pytest.approx(np.exp(-2), rel=0.3)


def test_window_shrinks_to_a_multiple_of_16_for_small_images():
    assert fit_window(256, 2448, 2448) == 256
    assert fit_window(256, 200, 500) == 192
    assert fit_window(256, 16, 500) == 16  # the smallest image side that can be predicted
    with pytest.raises(PipelineError, match="500x10 pixels is too small"):
        fit_window(256, 10, 500)


def test_each_test_time_augmentation_is_undone_by_its_inverse():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    outputs = {tuple(dihedral_view(x, view).flatten().tolist()) for view in DIHEDRAL}
    assert len(outputs) == 8  # eight distinct views
    torch.testing.assert_close(dihedral_view(x, DIHEDRAL[0]), x)  # identity first: TTA off uses only it
    for view in DIHEDRAL:
        torch.testing.assert_close(undo_dihedral_view(dihedral_view(x, view), view), x)


class SmallSegmenter(torch.nn.Module):
    """The operations DeepLabV3+ is made of, a few of each: strided, dilated and depthwise-separable convolutions
    with batch norm (which freezing folds into them), ReLU, bilinear upsampling and a skip concatenation.

    The compile test uses it rather than the ResNet-18 DeepLabV3+: what it checks is that the compile options
    give eager's numbers through the pipeline's prediction path, and that network's cold compile takes over a
    minute of this suite's CPU, this one's a few seconds.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        nn = torch.nn
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.context = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.skip = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(20, NUM_CLASSES, 3, padding=1)
        for norm in (self.down[1], self.context[2]):  # running statistics other than 0 and 1, as a trained net's
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = nn_functional.interpolate(self.context(self.down(x)), size=x.shape[-2:], mode="bilinear")
        return self.head(torch.cat([context, self.skip(x)], dim=1))


def test_a_compiled_model_predicts_what_the_eager_model_predicts():
    from landcover.data.scaling import UINT8_RGB
    from landcover.inference.probabilities import model_probabilities
    from landcover.model.model import compile_for_inference

    model = SmallSegmenter().eval().to(memory_format=torch.channels_last)
    compiled_model = compile_for_inference(model)
    assert getattr(compiled_model, "_orig_mod", None) is model  # torch.compile's wrapper around it
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    eager, compiled = (
        SlidingWindows(
            model_probabilities(network, torch.device("cpu"), UINT8_RGB, precision="fp32", tta=False),
            NUM_CLASSES,
            window=64,
            overlap=0.25,
            batch_size=2,
        ).probabilities(image)
        for network in (model, compiled_model)
    )
    assert np.abs(eager - 1 / NUM_CLASSES).max() > 0.05  # the network's output is no near-uniform guess
    np.testing.assert_allclose(compiled, eager, atol=1e-4)


class CornerSensitive(torch.nn.Module):
    """A tiny model that is not flip- or rotation-equivariant, so test-time augmentation changes its output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, NUM_CLASSES, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.linspace(0, 4, x.shape[-1])


@pytest.mark.parametrize("tta", [False, True])
def test_a_trained_model_predicts_with_its_own_normalisation_and_the_asked_tta(tta, monkeypatch):
    from landcover.data.palette import ClassTable
    from landcover.data.scaling import UINT8_RGB
    from landcover.inference import probabilities as inference
    from landcover.model.checkpoint import TrainedModel

    model = CornerSensitive().eval()
    scaling = dataclasses.replace(UINT8_RGB, mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3))
    # channels_last weights from the start, as trained_model_probabilities makes them: the same convolution
    # kernels then run for `expected` and `predicted`, so they can be compared bit for bit
    model = model.to(memory_format=torch.channels_last)
    trained = TrainedModel(model, ClassTable.deepglobe(), scaling, tile_size=16)
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))
    cpu = torch.device("cpu")
    expected = inference.model_probabilities(model, cpu, scaling, precision="fp32", tta=tta)(batch)
    other_tta = inference.model_probabilities(model, cpu, scaling, precision="fp32", tta=not tta)(batch)
    assert not torch.allclose(expected, other_tta)  # the model tells TTA from none
    # auto is bf16 only where the device has it natively; fp32 is fp32 whatever the hardware
    from landcover.model import devices

    for asked, supported in (("fp32", True), ("auto", False)):
        monkeypatch.setattr(
            devices, "bf16_supported", lambda device, supported=supported: device.type == "cpu" and supported
        )
        predicted = inference.trained_model_probabilities(trained, cpu, precision=asked, tta=tta)(batch)
        torch.testing.assert_close(predicted, expected, rtol=0, atol=0)
    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)
    for asked in ("auto", "bf16"):
        in_bf16 = inference.trained_model_probabilities(trained, cpu, precision=asked, tta=tta)(batch)
        assert not torch.equal(in_bf16, expected) and torch.allclose(in_bf16, expected, atol=0.05)
    with pytest.raises(PipelineError, match="predict.precision fp16 needs a CUDA device, this run is on cpu"):
        inference.trained_model_probabilities(trained, cpu, precision="fp16", tta=tta)


# --- blending where the probabilities are, against the numpy host blending it replaced ------------------


def random_softmax(batch: torch.Tensor) -> torch.Tensor:
    """Probabilities that depend on the pixels, with no ties: a fixed random 1x1 convolution, softmaxed."""
    weights = torch.linspace(-1, 1, 3 * NUM_CLASSES).reshape(NUM_CLASSES, 3, 1, 1)
    logits = torch.nn.functional.conv2d(batch.permute(0, 3, 1, 2).float() / 64, weights)
    return logits.softmax(dim=1).contiguous(memory_format=torch.channels_last)  # as a channels_last model gives


def whole_image_host_blend(probability_fn, image, num_classes, window, overlap, batch_size) -> np.ndarray:
    """The reference: every window's weighted probabilities summed into whole-image numpy arrays on the host,
    batch by batch in the window grid's order, then divided once."""
    height, width = image.shape[:2]
    window = fit_window(window, height, width)
    weights = window_weights(window)
    total = np.zeros((num_classes, height, width), np.float32)
    weight_sum = np.zeros((height, width), np.float32)
    origins = window_grid(height, width, window, overlap)
    for start in range(0, len(origins), batch_size):
        batch = origins[start : start + batch_size]
        crops = torch.from_numpy(np.stack([image[y : y + window, x : x + window] for y, x in batch]))
        for (y, x), prob in zip(batch, probability_fn(crops).numpy()):
            total[:, y : y + window, x : x + window] += prob * weights
            weight_sum[y : y + window, x : x + window] += weights
    return total / weight_sum


@pytest.mark.parametrize("in_torch", [False, True], ids=["numpy on the cpu", "torch as on a device"])
@pytest.mark.parametrize(
    "height, width, window, overlap, batch_size",
    [(150, 97, 64, 0.25, 3), (128, 128, 64, 0.5, 8), (70, 200, 96, 0.0, 2), (300, 40, 32, 0.25, 7)],
)
def test_streamed_blending_in_numpy_or_torch_is_bit_identical_to_a_whole_image_host_blend(
    height, width, window, overlap, batch_size, in_torch
):
    """The sums in torch (as on a GPU) do numpy's float32 multiply and add per element in the same order:
    on the CPU they give the very bits of a plain numpy blend of the whole image on the host, as the CPU's numpy
    sums do, though the engine streams the image in strips."""
    from landcover.inference.blending import classes_of, confidence_of, times_255

    image = np.random.default_rng(height + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    old = whole_image_host_blend(random_softmax, image, NUM_CLASSES, window, overlap, batch_size)
    numpy_on_cpu = not in_torch
    windows = SlidingWindows(random_softmax, NUM_CLASSES, window, overlap, batch_size, numpy_on_cpu=numpy_on_cpu)
    new = windows.probabilities(image)
    assert new.dtype == np.float32
    np.testing.assert_array_equal(new, old)  # bit for bit, not approximately
    classes = windows.classes(image)
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, old.argmax(axis=0))
    on_device = torch.from_numpy(new)
    np.testing.assert_array_equal(classes_of(on_device, numpy_on_cpu), old.argmax(axis=0))
    confidence = confidence_of(on_device, numpy_on_cpu)
    np.testing.assert_array_equal(confidence, np.rint(old.max(axis=0) * 255).astype(np.uint8))
    np.testing.assert_array_equal(times_255(on_device, numpy_on_cpu), np.rint(old * 255).astype(np.uint8))


def test_tied_classes_resolve_to_the_first_as_numpy_does():
    probs = torch.tensor([[[0.5, 0.2]], [[0.5, 0.4]], [[0.0, 0.4]]])  # pixel 0: classes 0 and 1 tie; pixel 1: 1, 2
    from landcover.inference.blending import classes_of, confidence_of

    classes, confidence = classes_of(probs), confidence_of(probs)
    np.testing.assert_array_equal(classes, probs.numpy().argmax(axis=0))
    np.testing.assert_array_equal(classes, [[0, 1]])
    np.testing.assert_array_equal(confidence, [[128, 102]])  # rint(127.5) = 128 (half to even), rint(102.0)


def test_sums_stay_on_the_device_the_probability_function_returns():
    """A probability function on the 'meta' device (shapes only): the blend is made there, never copied to the host."""

    def on_meta(batch: torch.Tensor) -> torch.Tensor:
        return torch.empty(batch.shape[0], NUM_CLASSES, batch.shape[1], batch.shape[2], device="meta")

    blended = SlidingWindows(on_meta, NUM_CLASSES, 64, 0.25, 3).blended(np.zeros((100, 90, 3), np.uint8))
    assert blended.device.type == "meta" and blended.shape == (NUM_CLASSES, 100, 90)
    assert blended.dtype == torch.float32
