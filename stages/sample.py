"""sample: generate the synthetic DeepGlobe-layout dataset that the default pipeline runs on."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.io.errors import run_stage
from landcover.io.outputs import atomic_dir
from landcover.io.params import DEFAULT_PARAMS, SampleParams, load_params, read_section
from landcover.synthetic.dataset import write_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="dataset root to write (replaced if present)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    sample_params = read_section(load_params(args.params), "sample", SampleParams)

    with atomic_dir(args.out) as staging:
        write_sample(
            staging,
            seed=sample_params.seed,
            train_images=sample_params.train_images,
            valid_images=sample_params.valid_images,
            test_images=sample_params.test_images,
            image_size=sample_params.image_size,
            jpeg_quality=sample_params.jpeg_quality,
        )
    size = sample_params.image_size
    print(f"sample: {sample_params.train_images} labelled images of {size}x{size} in {args.out}")


if __name__ == "__main__":
    run_stage(main)
