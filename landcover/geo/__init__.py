"""Georeferenced rasters of any size: reading scenes, streamed mapping, areas on the ground, polygons."""
