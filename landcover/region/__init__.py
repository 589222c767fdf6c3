"""Mapping a region: many scenes as one run on Dask.distributed (a local cluster or an existing one), resumable
scene by scene, then one mosaic and one area table; and the change between two maps (docs/region.md)."""
