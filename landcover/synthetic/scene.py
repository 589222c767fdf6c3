"""One synthetic scene: land-cover labels as smooth blobs, painted with each class's texture, clouds,
and a camera's exposure, blur and noise.

Colours overlap between classes (agriculture and rangeland share one colour distribution, water is
as dark as forest, barren ground is as bright as cloud) and every image gets its own exposure and
white balance, so a model that scores well must have learnt texture: crop rows, grass mottling,
tree crowns, roof grids.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from scipy import ndimage

from landcover.data.palette import ClassTable
from landcover.synthetic.fields import blend, coordinates, edges, fine_noise, smooth_noise

DEEPGLOBE = ClassTable.deepglobe()
URBAN = DEEPGLOBE.index_of("urban_land")
AGRICULTURE = DEEPGLOBE.index_of("agriculture_land")
RANGELAND = DEEPGLOBE.index_of("rangeland")
FOREST = DEEPGLOBE.index_of("forest_land")
WATER = DEEPGLOBE.index_of("water")
BARREN = DEEPGLOBE.index_of("barren_land")
UNKNOWN = DEEPGLOBE.index_of("unknown")
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
VEGETATION_COLOURS = np.array(
    [[118, 128, 72], [150, 146, 92], [112, 98, 72], [92, 112, 62], [165, 155, 115]], dtype=np.float32
)
FOREST_COLOUR = np.array([50, 78, 44], dtype=np.float32)
# Water is dark and close to shaded forest; only its lack of texture sets it apart.
WATER_COLOURS = np.array([[30, 52, 58], [36, 58, 44], [52, 62, 54]], dtype=np.float32)
ROOF_COLOURS = np.array(
    [[150, 150, 148], [190, 190, 185], [222, 221, 215], [152, 96, 80], [124, 88, 70], [82, 84, 88], [112, 120, 128]],
    dtype=np.float32,
)
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


# --- Labels -----------------------------------------------------------------------------------------


def _region_field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance field whose level sets are smooth blobs about sigma px across, with bent borders."""
    field = smooth_noise(rng, (size, size), sigma)
    field += BORDER_WEIGHT * smooth_noise(rng, (size, size), BORDER_SIGMA)
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
    count = int(np.clip(round(4 * half[0] * half[1] / mean_size**2), 1, half[0] * half[1]))
    seeds = rng.choice(half[0] * half[1], size=count, replace=False)
    not_seed = np.ones(half, dtype=bool)
    not_seed.flat[seeds] = False
    ids = np.zeros(half, dtype=np.int32)
    ids.flat[seeds] = np.arange(count)
    nearest = ndimage.distance_transform_edt(not_seed, return_distances=False, return_indices=True)
    parcels = ids[nearest[0], nearest[1]]
    return parcels.repeat(2, axis=0).repeat(2, axis=1)[: shape[0], : shape[1]], count


def _paint_agriculture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Field parcels, each striped with crop rows of its own orientation, period and colour."""
    parcels, count = _voronoi_parcels(rng, shape, rng.uniform(*PARCEL_SIZE))
    angle = rng.uniform(0, np.pi, count)
    wavenumber = 2 * np.pi / rng.uniform(*STRIPE_PERIOD, count)
    ky = (wavenumber * np.sin(angle)).astype(np.float32)
    kx = (wavenumber * np.cos(angle)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, count).astype(np.float32)
    contrast = rng.uniform(*STRIPE_CONTRAST, count).astype(np.float32)
    y, x = coordinates(shape)
    shade = 1 + contrast[parcels] * np.sin(ky[parcels] * y + kx[parcels] * x + phase[parcels])
    shade[edges(parcels)] *= 0.8  # field margins: tracks and hedges between parcels
    return _vegetation_colours(rng, count)[parcels] * shade[..., None]


def _paint_rangeland(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Agriculture's colours, blended smoothly, with isotropic grass mottling and dark shrubs."""
    colours = blend(rng, _vegetation_colours(rng, 6), shape, 25.0)
    clumps = fine_noise(rng, shape, 2.5)
    shade = 1 + 0.11 * fine_noise(rng, shape, 1.0) + 0.09 * clumps
    shade[clumps > 1.8] *= 0.8
    return colours * shade[..., None]


def _paint_forest(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A canopy of round crowns, lit from one side: bright sunlit flanks, dark shadows and gaps."""
    height = np.zeros(shape, dtype=np.float32)
    for sigma in CROWN_SIGMAS:
        # Enough crowns of each size to cover about half the area: together they close the canopy.
        count = max(1, round(0.5 * shape[0] * shape[1] / (np.pi * (2 * sigma) ** 2)))
        trees = np.zeros(shape, dtype=np.float32)
        trees.flat[rng.integers(trees.size, size=count)] = rng.uniform(0.6, 1.0, count) * 2 * np.pi * sigma**2
        height += ndimage.gaussian_filter(trees, sigma)  # a crown of peak height ~1 per tree
    height = 1 - np.exp(-height)  # overlapping crowns saturate instead of stacking up
    sun = rng.uniform(0, 2 * np.pi)
    slope = math.cos(sun) * ndimage.sobel(height, axis=0) + math.sin(sun) * ndimage.sobel(height, axis=1)
    light = np.clip(0.35 + 0.75 * height + 0.25 * slope, 0.15, 1.6)
    image = light[..., None] * (FOREST_COLOUR * rng.uniform(0.85, 1.15))
    for channel in range(3):  # species and health vary over tens of pixels
        image[..., channel] *= 1 + 0.08 * smooth_noise(rng, shape, 12.0)
    return image


def _paint_water(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth, low-variance dark water: only slow changes of depth and sediment."""
    colours = WATER_COLOURS * rng.uniform(0.85, 1.15, size=(len(WATER_COLOURS), 1)).astype(np.float32)
    return blend(rng, colours, shape, 60.0)


def _grid_axis(
    coordinate: np.ndarray, house: float, houses_per_block: int, road: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    y, x = coordinates(shape)
    house, road = rng.uniform(*HOUSE_SIZE), rng.uniform(*ROAD_WIDTH)
    road_u, cell_u, within_u = _grid_axis(
        math.cos(angle) * x + math.sin(angle) * y, house, int(rng.integers(3, 7)), road
    )
    road_v, cell_v, within_v = _grid_axis(
        math.cos(angle) * y - math.sin(angle) * x, house, int(rng.integers(2, 5)), road
    )
    # Each plot looks its house up in tables of PLOT_TABLE x PLOT_TABLE plots, repeated beyond.
    plot = cell_u % PLOT_TABLE * PLOT_TABLE + cell_v % PLOT_TABLE
    plots = PLOT_TABLE**2
    built = (rng.random(plots) > 0.15)[plot]  # some plots are empty yards
    # Yard on each side of the house, as a share of the plot: houses differ in size and placement.
    before_u, after_u, before_v, after_v = rng.uniform(0.04, 0.25, size=(4, plots)).astype(np.float32)
    far_edge = 1 - after_u[plot]
    inside_v = (within_v > before_v[plot]) & (within_v < 1 - after_v[plot])
    roof = built & inside_v & (within_u > before_u[plot]) & (within_u < far_edge)
    # Houses cast a short shadow onto the yard beyond their far edge.
    shadow = built & inside_v & (within_u >= far_edge) & (within_u < far_edge + 0.08)

    image = _vegetation_colours(rng, 1)[0] * (1 + 0.1 * fine_noise(rng, shape, 1.5))[..., None]
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
    base = blend(rng, colours, shape, 40.0)
    grain = fine_noise(rng, shape, 0.7)
    shade = 1 + 0.05 * grain + 0.05 * smooth_noise(rng, shape, 8.0)
    shade[grain > 2.6] *= 0.75
    return base * shade[..., None]


PAINTERS = {
    AGRICULTURE: _paint_agriculture,
    RANGELAND: _paint_rangeland,
    FOREST: _paint_forest,
    WATER: _paint_water,
    URBAN: _paint_urban,
    BARREN: _paint_barren,
}


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
    cloud = CLOUD_COLOUR * (0.9 + 0.06 * smooth_noise(rng, opacity.shape, 25.0))[..., None]
    image += opacity[..., None] * (cloud - image)


def _photograph(rng: np.random.Generator, scene: np.ndarray) -> np.ndarray:
    """uint8 image of the float scene (scaled in place): this image's exposure and white balance, blur, noise."""
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.92, 1.08, size=3)
    scene *= gain.astype(np.float32)
    scene += np.float32(rng.uniform(-12, 12))  # haze or black level
    image = ndimage.gaussian_filter(scene, sigma=(BLUR_SIGMA, BLUR_SIGMA, 0))
    image += SENSOR_NOISE * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8 RGB, labels HxW uint8 class indices in DeepGlobe order), H = W = size."""
    labels = _land_cover(rng, size)
    scene = _paint_land(rng, labels)
    opacity = _cloud_opacity(rng, size)
    if opacity is not None:
        _add_clouds(rng, scene, opacity)
        labels[opacity > 0.5] = UNKNOWN
    return _photograph(rng, scene), labels
