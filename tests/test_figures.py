"""Image panels are drawn from at most MAX_SHOWN_SIDE pixels a side, subsampled without inventing values."""

from __future__ import annotations

import numpy as np

from landcover.evaluation.figures import MAX_SHOWN_SIDE, shown


def test_small_images_are_drawn_as_they_are():
    image = np.arange(384 * 384 * 3, dtype=np.uint32).reshape(384, 384, 3)
    assert np.array_equal(shown(image), image)
    assert shown(np.zeros((MAX_SHOWN_SIDE, 10))).shape == (MAX_SHOWN_SIDE, 10)


def test_large_images_are_subsampled_by_a_whole_step_keeping_exact_values():
    labels = np.random.default_rng(0).integers(0, 7, (2448, 2000)).astype(np.uint8)
    drawn = shown(labels)
    assert drawn.shape == (816, 667)  # every 3rd pixel: the smallest whole step to fit 1024
    assert np.array_equal(drawn, labels[::3, ::3])
    assert shown(np.zeros((MAX_SHOWN_SIDE + 1, 5, 3))).shape == (513, 3, 3)
