"""The data: raw layouts, the class table and its colours, tiles, encoded masks, splits, augmentation and loaders."""
