"""The sample stage's generator: a synthetic dataset in the layout of the Kaggle DeepGlobe Land Cover copy.

The real download cannot be fetched by the pipeline, so this sample is its default data. It is
meant to resemble the task rather than be a toy:

- regions are large blobs with smooth borders, like DeepGlobe's hand-drawn polygons, at a fixed
  scale in pixels (the real data is 50 cm/pixel), and the classes are as imbalanced as DeepGlobe's;
- colours overlap between classes (agriculture and rangeland share one colour distribution, water
  is as dark as forest, barren ground is as bright as cloud) and every image gets its own exposure
  and white balance, so a model that scores well must have learnt texture: crop rows, grass
  mottling, tree crowns, roof grids;
- masks carry off-palette values along region borders, as the real ones do.

Every image comes from its own random generator, so the same arguments give byte-identical files.

Modules: `fields` (random fields), `scene` (one image and its labels), `dataset` (the Kaggle
layout on disk, masks with off-palette borders).
"""
