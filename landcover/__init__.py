"""The land-cover library: everything the DVC stage scripts (stages/) and the commands call, grouped by layer.

    io          files in and out, errors, params                    (beneath everything)
    data        raw layouts, class table, tiles, encoding, splits   -> io
    model       the network, devices, checkpoints, ranks            -> data, io
    evaluation  metrics, model card, figures                        -> model, data, io
    training    the training loop                                   -> evaluation, model, data, io
    inference   sliding windows, TTA, export, runtimes              -> model, data, io
    geo         rasters, streamed mapping, areas, polygons          -> inference, model, data, io
    region      many scenes on Dask, resume, mosaic, change         -> geo, inference, model, data, io
    synthetic   the bundled sample's generator (the sample stage)   -> geo, data, io
    viewer      any output in the browser: tiles, the local server  -> region, geo, data, io
    cli         the commands landcover-map, -region, -change, -view -> every layer

Imports go only downward (tests/test_layers.py). Each package's __init__.py holds only its docstring,
so that each stage in dvc.yaml lists exactly the modules it uses as deps (tests/test_dvc_yaml.py).
"""
