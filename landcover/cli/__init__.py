"""The commands behind the console scripts: landcover-map (map), landcover-region (region) and landcover-change
(change)."""
