"""A synthetic dataset in the layout of the public Kaggle DeepGlobe Land Cover copy.

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
"""
from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from stages.core.imageio import write_jpeg, write_png
from stages.core.palette import THRESHOLD, ClassTable

_TABLE = ClassTable.deepglobe()
URBAN = _TABLE.index_of("urban_land")
AGRICULTURE = _TABLE.index_of("agriculture_land")
RANGELAND = _TABLE.index_of("rangeland")
FOREST = _TABLE.index_of("forest_land")
WATER = _TABLE.index_of("water")
BARREN = _TABLE.index_of("barren_land")
UNKNOWN = _TABLE.index_of("unknown")

SPLITS = ("train", "valid", "test")

# --- Label layout -------------------------------------------------------------------------------
# Each land class gets a smooth random field plus a bias; a pixel takes the class with the largest
# value. Scales are in pixels, not fractions of the image: a 512 px image holds a handful of
# regions and a 2448 px one many, as in the real data where regions span tens to hundreds of metres.
REGION_SIGMA = 60.0  # correlation length of the fields, px
BORDER_SIGMA = 20.0  # a weaker, finer field bends the borders so they are not plain arcs
BORDER_WEIGHT = 0.2
# Biases tuned (by sampling the fields' per-pixel distribution) so that the expected shares over
# many images are DeepGlobe's: agriculture 56%, urban, rangeland, forest, barren ~10%, water 3%.
LAND_BIASES = {URBAN: -0.66, AGRICULTURE: 0.70, RANGELAND: -0.74, FOREST: -0.60, WATER: -1.42, BARREN: -0.67}
BIAS_JITTER = 0.45  # per image and class: shares vary a lot from image to image, as in DeepGlobe

# Clouds (the `unknown` class) are laid over the land in a few images only.
CLOUDY_IMAGE_SHARE = 0.15
CLOUD_COVER = (0.02, 0.12)  # share of a cloudy image under cloud
CLOUD_SIGMA = 70.0
CLOUD_EDGE = 0.5  # field units over which cloud opacity ramps from 0 to 1: soft edges

# --- Appearance (RGB values 0-255 before the per-image camera jitter) ---------------------------
# Agriculture and rangeland both draw from these, so colour alone cannot tell them apart.
VEGETATION_COLOURS = np.array([[118, 128, 72], [150, 146, 92], [112, 98, 72], [92, 112, 62], [165, 155, 115]],
                              dtype=np.float32)
FOREST_COLOUR = np.array([50, 78, 44], dtype=np.float32)
# Water is dark and close to shaded forest; only its lack of texture sets it apart.
WATER_COLOURS = np.array([[30, 52, 58], [36, 58, 44], [52, 62, 54]], dtype=np.float32)
ROOF_COLOURS = np.array([[150, 150, 148], [190, 190, 185], [222, 221, 215], [152, 96, 80], [124, 88, 70],
                         [82, 84, 88], [112, 120, 128]], dtype=np.float32)
ROAD_COLOUR = np.array([118, 118, 116], dtype=np.float32)
# Barren ground reaches the brightness of cloud.
BARREN_COLOURS = np.array([[205, 186, 150], [186, 162, 126], [214, 205, 180], [172, 152, 122]], dtype=np.float32)
CLOUD_COLOUR = np.array([232, 234, 238], dtype=np.float32)

PARCEL_SIZE = (40.0, 110.0)  # mean field-parcel diameter, px
STRIPE_PERIOD = (4.0, 10.0)  # crop rows, px
STRIPE_CONTRAST = (0.12, 0.25)
CROWN_SIGMAS = (1.0, 1.6, 2.4)  # tree crowns of radius about 2 to 5 px
HOUSE_SIZE = (10.0, 26.0)  # roof-grid cell, px
PLOT_TABLE = 64  # per-plot looks (roof colour, size) repeat every 64 plots: too far apart to notice
ROAD_WIDTH = (4.0, 8.0)

# --- Camera ---------------------------------------------------------------------------------------
BLUR_SIGMA = 0.7  # optics: region borders are not pixel-sharp
SENSOR_NOISE = 2.5

# --- Masks ----------------------------------------------------------------------------------------
# Real DeepGlobe masks have values like (251, 3, 240) along region borders, and a few pixels whose
# thresholded colour is in no row. Shares are of the border pixels.
DRIFTED_BORDER_SHARE = 0.5
MAX_DRIFT = 30  # well inside the 128 threshold, so drifted values still read as their class
INVALID_BORDER_SHARE = 0.01


# --- Random fields ----------------------------------------------------------------------------------

def _gaussian_spread(length: int, sigma: float) -> np.ndarray:
    """(length, nodes) weights that spread white noise on a coarse grid into a smooth 1-D profile.

    Nodes are sigma apart (the bumps overlap so much that no grid shows: the variance ripples by
    ~1e-4) and run 3 sigma past both ends (so the field is as strong at the edges as inside); rows
    have unit norm, so the field has unit variance.
    """
    nodes = np.arange(-3 * sigma, length + 3 * sigma, sigma)
    pixels = np.arange(length)[:, None]
    weights = np.exp(-0.5 * ((pixels - nodes) / sigma) ** 2)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """HxW float32 unit-variance Gaussian random field of correlation length ~sigma px.

    Two small matrix products instead of a wide Gaussian filter: fast for any sigma. They run in
    float64 so that rounding to float32 hides the summation order of the kernel OpenBLAS picks for
    the CPU: the same bytes on other machines, not only on this one.
    """
    rows = _gaussian_spread(shape[0], sigma)
    cols = _gaussian_spread(shape[1], sigma)
    coarse = rng.standard_normal((rows.shape[1], cols.shape[1]))
    return (rows @ coarse @ cols.T).astype(np.float32)


def _fine_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance white noise blurred over a few pixels: grain and mottling."""
    radius = int(4 * sigma + 0.5)  # scipy's kernel, so the standard deviation below is exact
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    blurred = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return blurred / np.float32(np.sum(kernel ** 2))


def _blend(rng: np.random.Generator, colours: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """HxWx3 mix of K colours (K, 3), each weighted by its own smooth field of scale sigma px.

    Sharp weights (exp of 3x a unit-variance field; no overflow in float32) keep mostly one colour
    at a time with soft transitions. One field at a time, so memory does not grow with K; channel
    planes (3, H, W) so that every update runs over contiguous memory.
    """
    planes = np.zeros((3, *shape), dtype=np.float32)
    total_weight = np.zeros(shape, dtype=np.float32)
    for colour in colours:
        weight = np.exp(3 * _smooth_noise(rng, shape, sigma))
        total_weight += weight
        for plane, value in zip(planes, colour):
            plane += value * weight
    planes /= total_weight
    return np.moveaxis(planes, 0, -1)


# --- Labels -----------------------------------------------------------------------------------------

def _region_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance field whose level sets are smooth blobs about sigma px across, with bent borders."""
    field = _smooth_noise(rng, (size, size), sigma)
    field += BORDER_WEIGHT * _smooth_noise(rng, (size, size), BORDER_SIGMA)
    field /= np.float32(math.hypot(1, BORDER_WEIGHT))
    return field


def _land_cover(rng: np.random.Generator, size: int) -> np.ndarray:
    """HxW class indices of the six land classes: argmax of biased smooth fields."""
    jitter = rng.normal(0, BIAS_JITTER, len(LAND_BIASES))
    labels = np.zeros((size, size), dtype=np.uint8)
    best = np.full((size, size), -np.inf, dtype=np.float32)
    # One field at a time with a running argmax: two fields in memory, not six.
    for (cls, bias), shift in zip(LAND_BIASES.items(), jitter):
        field = _region_field(rng, size, REGION_SIGMA)
        field += np.float32(bias + shift)
        wins = field > best
        labels[wins] = cls
        best[wins] = field[wins]
    return labels


def _cloud_opacity(rng: np.random.Generator, size: int) -> np.ndarray | None:
    """HxW cloud opacity in [0, 1] for a cloudy image (pixels above 0.5 are `unknown`), else None."""
    if rng.random() >= CLOUDY_IMAGE_SHARE:
        return None
    field = _region_field(rng, size, CLOUD_SIGMA)
    threshold = NormalDist().inv_cdf(1 - rng.uniform(*CLOUD_COVER))
    return np.clip(0.5 + (field - threshold) / CLOUD_EDGE, 0, 1)


# --- Textures: each paints an (h, w, 3) float32 patch for one region ------------------------------

def _vegetation_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) colours of crops, grass or soil, each with its own brightness and tint."""
    picked = VEGETATION_COLOURS[rng.integers(len(VEGETATION_COLOURS), size=count)]
    brightness = rng.uniform(0.85, 1.15, size=(count, 1))
    return (picked * brightness + rng.normal(0, 6, size=(count, 3))).astype(np.float32)


def _voronoi_parcels(rng: np.random.Generator, shape: tuple[int, int], mean_size: float) -> tuple[np.ndarray, int]:
    """HxW parcel ids of a Voronoi tiling, and the number of parcels.

    Computed at half resolution (parcels are tens of pixels wide; the 2 px steps vanish in the blur).
    """
    half = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    count = int(np.clip(round(4 * half[0] * half[1] / mean_size ** 2), 1, half[0] * half[1]))
    seeds = rng.choice(half[0] * half[1], size=count, replace=False)
    not_seed = np.ones(half, dtype=bool)
    not_seed.flat[seeds] = False
    ids = np.zeros(half, dtype=np.int32)
    ids.flat[seeds] = np.arange(count)
    nearest = ndimage.distance_transform_edt(not_seed, return_distances=False, return_indices=True)
    parcels = ids[nearest[0], nearest[1]]
    return parcels.repeat(2, axis=0).repeat(2, axis=1)[: shape[0], : shape[1]], count


def _coordinates(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 row (H, 1) and column (1, W) coordinates: int64 ones would turn textures into float64."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    return y.astype(np.float32), x.astype(np.float32)


def _edges(ids: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another id."""
    edges = np.zeros(ids.shape, dtype=bool)
    edges[:-1] |= ids[:-1] != ids[1:]
    edges[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    return edges


def _paint_agriculture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Field parcels, each striped with crop rows of its own orientation, period and colour."""
    parcels, count = _voronoi_parcels(rng, shape, rng.uniform(*PARCEL_SIZE))
    angle = rng.uniform(0, np.pi, count)
    wavenumber = 2 * np.pi / rng.uniform(*STRIPE_PERIOD, count)
    ky = (wavenumber * np.sin(angle)).astype(np.float32)
    kx = (wavenumber * np.cos(angle)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, count).astype(np.float32)
    contrast = rng.uniform(*STRIPE_CONTRAST, count).astype(np.float32)
    y, x = _coordinates(shape)
    shade = 1 + contrast[parcels] * np.sin(ky[parcels] * y + kx[parcels] * x + phase[parcels])
    shade[_edges(parcels)] *= 0.8  # field margins: tracks and hedges between parcels
    return _vegetation_colours(rng, count)[parcels] * shade[..., None]


def _paint_rangeland(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Agriculture's colours, blended smoothly, with isotropic grass mottling and dark shrubs."""
    colours = _blend(rng, _vegetation_colours(rng, 6), shape, 25.0)
    clumps = _fine_noise(rng, shape, 2.5)
    shade = 1 + 0.11 * _fine_noise(rng, shape, 1.0) + 0.09 * clumps
    shade[clumps > 1.8] *= 0.8
    return colours * shade[..., None]


def _paint_forest(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A canopy of round crowns, lit from one side: bright sunlit flanks, dark shadows and gaps."""
    height = np.zeros(shape, dtype=np.float32)
    for sigma in CROWN_SIGMAS:
        # Enough crowns of each size to cover about half the area: together they close the canopy.
        count = max(1, round(0.5 * shape[0] * shape[1] / (np.pi * (2 * sigma) ** 2)))
        trees = np.zeros(shape, dtype=np.float32)
        trees.flat[rng.integers(trees.size, size=count)] = rng.uniform(0.6, 1.0, count) * 2 * np.pi * sigma ** 2
        height += ndimage.gaussian_filter(trees, sigma)  # a crown of peak height ~1 per tree
    height = 1 - np.exp(-height)  # overlapping crowns saturate instead of stacking up
    sun = rng.uniform(0, 2 * np.pi)
    slope = math.cos(sun) * ndimage.sobel(height, axis=0) + math.sin(sun) * ndimage.sobel(height, axis=1)
    light = np.clip(0.35 + 0.75 * height + 0.25 * slope, 0.15, 1.6)
    image = light[..., None] * (FOREST_COLOUR * rng.uniform(0.85, 1.15))
    for channel in range(3):  # species and health vary over tens of pixels
        image[..., channel] *= 1 + 0.08 * _smooth_noise(rng, shape, 12.0)
    return image


def _paint_water(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth, low-variance dark water: only slow changes of depth and sediment."""
    colours = WATER_COLOURS * rng.uniform(0.85, 1.15, size=(len(WATER_COLOURS), 1)).astype(np.float32)
    return _blend(rng, colours, shape, 60.0)


def _grid_axis(coordinate: np.ndarray, house: float, houses_per_block: int,
               road: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of the street grid: road mask, int32 house index, position within the house (0-1)."""
    period = houses_per_block * house + road
    block, within_block = np.divmod(coordinate, np.float32(period))
    on_road = within_block < road
    house_index, within_house = np.divmod(within_block - np.float32(road), np.float32(house))
    index = (block * houses_per_block + house_index).astype(np.int32)
    return on_road, index, within_house / np.float32(house)


def _paint_urban(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A rotated street grid: grey roads around blocks of houses with varied roofs and grassy yards."""
    angle = rng.uniform(0, np.pi / 2)
    y, x = _coordinates(shape)
    house, road = rng.uniform(*HOUSE_SIZE), rng.uniform(*ROAD_WIDTH)
    road_u, cell_u, within_u = _grid_axis(math.cos(angle) * x + math.sin(angle) * y, house,
                                          int(rng.integers(3, 7)), road)
    road_v, cell_v, within_v = _grid_axis(math.cos(angle) * y - math.sin(angle) * x, house,
                                          int(rng.integers(2, 5)), road)
    # Each plot looks its house up in tables of PLOT_TABLE x PLOT_TABLE plots, repeated beyond.
    plot = cell_u % PLOT_TABLE * PLOT_TABLE + cell_v % PLOT_TABLE
    plots = PLOT_TABLE ** 2
    built = (rng.random(plots) > 0.15)[plot]  # some plots are empty yards
    # Yard on each side of the house, as a share of the plot: houses differ in size and placement.
    before_u, after_u, before_v, after_v = rng.uniform(0.04, 0.25, size=(4, plots)).astype(np.float32)
    far_edge = 1 - after_u[plot]
    inside_v = (within_v > before_v[plot]) & (within_v < 1 - after_v[plot])
    roof = built & inside_v & (within_u > before_u[plot]) & (within_u < far_edge)
    # Houses cast a short shadow onto the yard beyond their far edge.
    shadow = built & inside_v & (within_u >= far_edge) & (within_u < far_edge + 0.08)

    image = _vegetation_colours(rng, 1)[0] * (1 + 0.1 * _fine_noise(rng, shape, 1.5))[..., None]
    roof_colours = ROOF_COLOURS[rng.integers(len(ROOF_COLOURS), size=plots)]
    roof_colours *= rng.uniform(0.9, 1.1, size=(plots, 1)).astype(np.float32)
    ridge_along_u = rng.random(plots) < 0.5
    roof_plot = plot[roof]
    # Gable roofs: the half facing the sun is brighter.
    sunny = np.where(ridge_along_u[roof_plot], within_v[roof] < 0.5, within_u[roof] < 0.5)
    image[roof] = roof_colours[roof_plot] * np.where(sunny, np.float32(1.1), np.float32(0.9))[:, None]
    image[shadow] *= 0.55
    image[road_u | road_v] = ROAD_COLOUR * rng.uniform(0.85, 1.15)
    return image


def _paint_barren(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Bright tan ground: slow colour changes, fine grain and scattered dark stones."""
    colours = BARREN_COLOURS * rng.uniform(0.9, 1.1, size=(len(BARREN_COLOURS), 1)).astype(np.float32)
    base = _blend(rng, colours, shape, 40.0)
    grain = _fine_noise(rng, shape, 0.7)
    shade = 1 + 0.05 * grain + 0.05 * _smooth_noise(rng, shape, 8.0)
    shade[grain > 2.6] *= 0.75
    return base * shade[..., None]


PAINTERS = {AGRICULTURE: _paint_agriculture, RANGELAND: _paint_rangeland, FOREST: _paint_forest,
            WATER: _paint_water, URBAN: _paint_urban, BARREN: _paint_barren}


def _paint_land(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """HxWx3 float32 scene: each connected region painted with a texture of its own parameters.

    Painting region by region within its bounding box costs about one image's worth of work
    whatever the number of classes, and gives each field area or town its own layout.
    """
    image = np.empty((*labels.shape, 3), dtype=np.float32)
    for cls, paint in PAINTERS.items():
        regions, _ = ndimage.label(labels == cls)
        for region, box in enumerate(ndimage.find_objects(regions), start=1):
            inside = regions[box] == region
            image[box][inside] = paint(rng, inside.shape)[inside]
    return image


def _add_clouds(rng: np.random.Generator, image: np.ndarray, opacity: np.ndarray) -> None:
    """Lay soft white clouds, with slow variations of thickness, over the scene in place."""
    cloud = CLOUD_COLOUR * (0.9 + 0.06 * _smooth_noise(rng, opacity.shape, 25.0))[..., None]
    image += opacity[..., None] * (cloud - image)


def _photograph(rng: np.random.Generator, scene: np.ndarray) -> np.ndarray:
    """uint8 image of the float scene (scaled in place): this image's exposure and white balance, blur, noise."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, size=3)
    scene *= gain.astype(np.float32)
    scene += np.float32(rng.uniform(-12, 12))  # haze or black level
    image = ndimage.gaussian_filter(scene, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0))
    image += SENSOR_NOISE * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --- Public API ----------------------------------------------------------------------------------------

def generate_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8 RGB, labels HxW uint8 class indices in DeepGlobe order), H = W = size."""
    labels = _land_cover(rng, size)
    scene = _paint_land(rng, labels)
    opacity = _cloud_opacity(rng, size)
    if opacity is not None:
        _add_clouds(rng, scene, opacity)
        labels[opacity > 0.5] = UNKNOWN
    return _photograph(rng, scene), labels


def _borders(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another class."""
    edges = _edges(labels)
    edges[1:] |= labels[1:] != labels[:-1]
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edges


def _colour_in_no_row(table: ClassTable) -> tuple[int, int, int] | None:
    """A 0/255 colour that thresholds to no class (pure red for DeepGlobe), or None if all 8 are taken."""
    used = {tuple(int(v) for v in colour) for colour in table.colours}
    return next((c for c in itertools.product((255, 0), repeat=3) if c not in used), None)


def colour_mask(labels: np.ndarray, table: ClassTable, rng: np.random.Generator, off_palette: bool) -> np.ndarray:
    """HxWx3 uint8 RGB mask in the table's palette; with off_palette, pixels along region borders get
    off-palette values like real DeepGlobe masks: mostly values that are not exactly 0/255 but threshold
    at 128 to the right class colour (e.g. 251,3,240), plus a very small share (well under 0.1% of pixels)
    that threshold to a colour that is in no row (e.g. pure red 255,0,0) -> these become ignore pixels."""
    mask = table.colours[labels]
    if not off_palette:
        return mask
    if not table.is_binary:
        raise ValueError("off-palette border values need a table of 0/255 colours (the threshold rule)")
    border = np.flatnonzero(_borders(labels))
    pixels = mask.reshape(-1, 3)
    drifted = border[rng.random(border.size) < DRIFTED_BORDER_SHARE]
    drift = rng.integers(1, MAX_DRIFT + 1, size=(drifted.size, 3), dtype=np.uint8)
    values = pixels[drifted]
    pixels[drifted] = np.where(values >= THRESHOLD, values - drift, values + drift)
    invalid_colour = _colour_in_no_row(table)
    if invalid_colour is not None:
        pixels[border[rng.random(border.size) < INVALID_BORDER_SHARE]] = invalid_colour
    return mask


def _image_ids(seed: int, count: int) -> list[int]:
    """Distinct ids of 3 to 6 digits, like DeepGlobe's; asking for more keeps the earlier ones."""
    rng = np.random.default_rng([seed, len(SPLITS)])  # apart from every image's [seed, split, position]
    ids: dict[int, None] = {}  # an ordered set
    while len(ids) < count:
        ids[int(rng.integers(100, 1_000_000))] = None
    return list(ids)


def write_sample(root: Path, *, seed: int, train_images: int, valid_images: int, test_images: int,
                 image_size: int, jpeg_quality: int, progress: bool = True) -> None:
    """Write metadata.csv, class_dict.csv, train/<id>_sat.jpg + train/<id>_mask.png, valid/<id>_sat.jpg,
    test/<id>_sat.jpg (no masks for valid/test, as in the real dataset) into root (exists, empty)."""
    root = Path(root)
    counts = {"train": train_images, "valid": valid_images, "test": test_images}
    jobs = [(split, position) for split in SPLITS for position in range(counts[split])]
    _TABLE.to_csv(root / "class_dict.csv")
    for split in SPLITS:
        (root / split).mkdir()
    rows = []
    for (split, position), image_id in tqdm(list(zip(jobs, _image_ids(seed, len(jobs)))), desc="sample",
                                            unit="image", disable=not progress):
        # Seeded by split and position: an image does not change when other splits grow or shrink.
        rng = np.random.default_rng([seed, SPLITS.index(split), position])
        image, labels = generate_scene(rng, image_size)
        image_path = f"{split}/{image_id}_sat.jpg"
        write_jpeg(root / image_path, image, jpeg_quality)
        mask_path = ""
        if split == "train":  # the challenge never released masks for valid and test
            mask_path = f"{split}/{image_id}_mask.png"
            write_png(root / mask_path, colour_mask(labels, _TABLE, rng, off_palette=True))
        rows.append((image_id, split, image_path, mask_path))
    with open(root / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", "split", "sat_image_path", "mask_path"])
        writer.writerows(rows)
