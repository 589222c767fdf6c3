"""The network and where it runs: DeepLabV3+ built from params, devices and precision, checkpoints, torchrun's ranks."""
