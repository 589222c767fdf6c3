"""The DVC stage scripts: one short script per stage of dvc.yaml, each a thin user of the `landcover` library."""
