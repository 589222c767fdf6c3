"""Which checkpoints training keeps, and resuming from them.

- `best.pt`: the weights of the epoch with the best val mIoU (land classes) so far;
- `last.pt`: the latest epoch's weights with the optimizer and scheduler state, to resume from.
Both carry the config predict needs and the training history up to their epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stages.core.checkpoint import decode_history, encode_history, load_checkpoint, save_checkpoint
from stages.core.errors import PipelineError


@dataclass
class ResumeState:
    epochs_done: int
    history: list[dict]


class CheckpointPolicy:
    def __init__(self, models_dir: Path, config: dict) -> None:
        self.models_dir = models_dir
        self.config = config
        self.best_path = models_dir / "best.pt"
        self.last_path = models_dir / "last.pt"
        self.best_miou = -1.0

    def resume(self, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None) -> ResumeState:
        """Load last.pt's weights, optimizer and scheduler state; refuse one of another model or without best.pt."""
        checkpoint = load_checkpoint(self.last_path)
        for key, value in self.config.items():
            if checkpoint["config"].get(key) != value:
                raise PipelineError(f"{self.last_path}: was trained with {key}={checkpoint['config'].get(key)!r}, "
                                    f"now {value!r}; set train.resume to false to start afresh")
        if not self.best_path.exists():
            raise PipelineError(f"{self.best_path}: missing, so training cannot resume from {self.last_path}; "
                                "set train.resume to false to start afresh")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            if checkpoint["scheduler"] is None:
                raise PipelineError(f"{self.last_path}: was trained without a scheduler; set train.resume to false")
            scheduler.load_state_dict(checkpoint["scheduler"])
        self.best_miou = checkpoint["best_miou"]
        return ResumeState(checkpoint["epoch"], decode_history(checkpoint["history"]))

    def after_epoch(self, epochs_done: int, history: list[dict], val_miou: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None) -> None:
        """Save best.pt if `val_miou` beats the best so far, and last.pt always."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        state = {"config": self.config, "epoch": epochs_done, "history": encode_history(history),
                 "model": model.state_dict()}
        if val_miou > self.best_miou:
            self.best_miou = val_miou
            save_checkpoint(self.best_path, **state, best_miou=self.best_miou)
        save_checkpoint(self.last_path, **state, best_miou=self.best_miou, optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict() if scheduler else None)
