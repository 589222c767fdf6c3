"""A model as a probability function: windows of its bands in (uint8, or float32 raw values), softmax class
probabilities out, scaled as in training, autocast to the resolved precision, the logits divided by the
checkpoint's calibration temperature before the softmax, and optionally averaged over the 8 dihedral views (TTA)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from landcover.data.scaling import BandScaling
from landcover.inference.blending import ProbabilityFn
from landcover.model.checkpoint import TrainedModel
from landcover.model.devices import autocast, resolve_precision
from landcover.model.model import compile_for_inference, normalise


def calibrated_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / temperature) over the classes (dim 1), in fp32; temperature 1.0 divides by nothing."""
    logits = logits.float()
    return (logits if temperature == 1.0 else logits / temperature).softmax(dim=1)


def model_probabilities(
    model: nn.Module, device: torch.device, scaling: BandScaling, precision: str, tta: bool, temperature: float = 1.0
) -> ProbabilityFn:
    """Wrap a model (eval mode, channels_last) as a ProbabilityFn on `device`, its inputs scaled by `scaling`,
    autocast to `precision` (bf16, fp16 or fp32: resolved already), its logits divided by `temperature` (the
    checkpoint's calibration) before the softmax, so blended windows and TTA averages are of the calibrated model."""

    @torch.inference_mode()
    def window_probabilities(batch: torch.Tensor) -> torch.Tensor:
        images = normalise(batch.to(device), scaling).contiguous(memory_format=torch.channels_last)

        def view_probabilities(view: tuple[int, bool]) -> torch.Tensor:
            with autocast(device, precision):
                logits = model(dihedral_view(images, view))
            return calibrated_softmax(logits, temperature)

        return averaged_over_views(view_probabilities, tta)

    return window_probabilities


def averaged_over_views(view_probabilities: Callable[[tuple[int, bool]], torch.Tensor], tta: bool) -> torch.Tensor:
    """The probabilities of the identity view, or with `tta` their mean over the 8 DIHEDRAL views, each put
    back in place first. `view_probabilities(view)` gives NCHW probabilities of the batch seen in `view`."""
    first, *others = views = DIHEDRAL if tta else DIHEDRAL[:1]
    summed = undo_dihedral_view(view_probabilities(first), first)
    for view in others:
        summed = summed + undo_dihedral_view(view_probabilities(view), view)
    return summed / len(views)


def trained_model_probabilities(
    trained: TrainedModel, device: torch.device, precision: str, tta: bool, compile: bool = False
) -> ProbabilityFn:
    """A checkpoint's model as a ProbabilityFn: moved to `device` in channels_last, optionally compiled,
    normalising as in training; `precision` is predict.precision (auto: bf16 where native, see devices)."""
    model = trained.model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if compile:
        model = compile_for_inference(model)
    resolved = resolve_precision(precision, device, "predict.precision")
    return model_probabilities(model, device, trained.scaling, resolved, tta, trained.temperature)


# The 8 flips/90-degree rotations of test-time augmentation, as (quarter turns, horizontal flip); identity first.
DIHEDRAL = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def dihedral_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """One DIHEDRAL view of NCHW tensors: the optional horizontal flip, then the quarter turns."""
    turns, flip = view
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def undo_dihedral_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """The inverse of dihedral_view: per-pixel outputs of a view put back where the pixels came from."""
    turns, flip = view
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if flip else x
