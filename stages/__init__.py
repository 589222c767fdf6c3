"""Land-cover segmentation pipeline: one script per DVC stage, the shared code in `stages.core`."""
