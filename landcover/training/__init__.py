"""Training DeepLabV3+ on tiles, in parts that each hold one decision.

- `components`: what is built from params: the model, the loss, the optimizer, the scheduler,
  and how a batch reaches the model (device, precision, memory layout, normalisation).
- `loop`: one pass over a loader, training or evaluating, and the numbers it yields.
- `checkpoints`: which checkpoints are kept (best.pt on a better val mIoU, last.pt every epoch)
  and resuming from last.pt.
- `trainer`: `train()`, which puts them together epoch by epoch and logs with DVCLive.

Reproducibility: every random draw of an epoch (shuffle order, augmentations, dropout) is seeded
from (train.seed, epoch), so an epoch's result depends only on the weights and optimizer state it
starts from. That is what makes a run resumed from `last.pt` end bit-identical to an uninterrupted one.
"""
