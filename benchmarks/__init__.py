"""The project's benchmarks, each run from the repository root as `python -m benchmarks.<name>` (`--help` for its
options). None is part of the pipeline; each measures it in fresh processes and prints what it found.

    speed               make bench, make bench-quick: training, loading, inference and tiling against the seed
                        notebooks' way and the machine's peaks; the runtimes and the GPU section; results.json
    blending            make bench-blending: blending window probabilities on the device against on the host
    scale               make bench-scale: the data stages, DVC and the training loader at DeepGlobe's real size;
                        scale.json
    geotiff_streaming   make bench-geotiff: streaming GeoTIFF prediction of a large scene, and against in memory
    large_image_memory  peak memory of the tile stage and read_rgb on one very large image
    tile_memory         peak memory of the tile stage on 2 against 20 full-size images
    predict_settings    accuracy against speed of predict's window, overlap and batch (needs models/best.pt)

Run by benchmarks.speed, not on their own: gpu (its GPU section) and runtimes (its rows per predict.runtime).
seed_style is the speed benchmark's reference: the seed notebooks' loading, training and prediction.

What several share is in common (paths, params, peak memory, devices, timing, fresh processes, the machine's
description, results files, tables) and inputs (the cached full-size synthetic images). The speed_* modules
are benchmarks.speed's parts, the scale_* modules benchmarks.scale's.
"""
