"""A scripted labelling session in a real browser: landcover-view --sample on a tiny mapping output, driven by keys
in headless Chromium (Playwright); the server killed midway loses no answer, the next start resumes at the first
unanswered point, and landcover-assess reads the CSV the session wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

from landcover.geo.sampling import CANNOT_TELL
from tests.browser import find_browser
from tests.conftest import REPO
from tests.optional import need_group
from tests.test_change import TABLE, write_class_map
from tests.test_labelling import POINTS, block_map, references, sample_of
from tests.viewer_browser import browser_page, wait_drawn

KILLED_AFTER = 4  # answers given before the server is killed


@pytest.fixture
def page():
    need_group("viewer")
    if find_browser() is None:
        pytest.skip("no Chromium: install Debian's chromium (.ci/run does, as root) for the viewer's browser tests")
    with browser_page() as page:
        yield page


def write_image(path, classes: np.ndarray) -> None:
    """RGB imagery on the class map's grid: each class in its own colour, so the points' classes can be seen."""
    import rasterio
    from affine import Affine

    from tests.test_change import NORTH, PIXEL, UTM33, WEST

    rgb = TABLE.colours[np.where(classes == 255, 5, classes)].transpose(2, 0, 1)
    height, width = classes.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs=UTM33,
        transform=Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH),
    ) as dataset:  # fmt: skip
        dataset.write(rgb)


@pytest.fixture
def labelling_setup(tmp_path):
    """A mapping output (a class map, its area report, the input imagery) and a sample of POINTS points of it."""
    classes = block_map()
    (tmp_path / "inputs").mkdir()
    write_image(tmp_path / "inputs" / "scene.tif", classes)
    output = tmp_path / "out"
    output.mkdir()
    write_class_map(output / "scene.tif", classes)
    report = {
        "image": str(tmp_path / "inputs" / "scene.tif"),
        "areas": "map",
        "crs": "EPSG:32633",
        "classes": [
            {"class_id": k, "class": name, "pixels": int((classes == k).sum())} for k, name in enumerate(TABLE.names)
        ],
    }
    (output / "scene_areas.json").write_text(json.dumps(report))
    return output, *sample_of(output / "scene.tif", tmp_path / "sample")


@contextmanager
def viewer_server(output, design, *flags: str):
    """landcover-view with the sample, as a user starts it; yields (the process, the page's URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "landcover.cli.view", str(output), "--sample", str(design), "--no-browser", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"landcover-view printed {line!r}; stderr: {process.stderr.read() if process.poll() else ''}"
        yield process, found[0]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def panel_data(page, name: str) -> str:
    return page.eval_on_selector("#labelling", f"panel => panel.dataset.{name}")


def wait_answered(page, answered: int, index: int | None) -> None:
    """Until the server has written `answered` answers (the page shows only what it replied) and shows `index`."""
    page.wait_for_function(
        "([answered, index]) => { const panel = document.querySelector('#labelling');"
        " return panel.dataset.answered === String(answered)"
        " && (index === null || panel.dataset.index === String(index)); }",
        arg=[answered, index],
    )


def open_labelling(page, url) -> None:
    page.goto(url)
    page.wait_for_selector("#labelling[data-index]")


def key_of(design: dict, name: str) -> str:
    return str(design["classes"].index(name) + 1)


def test_a_labelling_session_by_keys_survives_a_kill_and_feeds_assess(page, labelling_setup, tmp_path):
    output, design_path, csv_path = labelling_setup
    design = json.loads(design_path.read_text())
    ids = [point["point_id"] for point in design["points"]]
    truth = [point["map_class"] for point in design["points"]]  # the imagery shows each pixel's map class

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with viewer_server(output, design_path) as (process, url):
        open_labelling(page, url)
        assert panel_data(page, "index") == "0" and panel_data(page, "answered") == "0"
        assert page.inner_text("#labelling-counts").startswith(f"0 / {POINTS} answered")
        assert page.inner_text("#labelling-map-class") == ""  # the map class is hidden
        assert not page.is_checked("#show-classes") and page.is_hidden("#pixel")
        legend = page.inner_text("#labelling-classes")
        assert all(f"{k + 1}\n" in legend or f"{k + 1}\t" in legend for k in range(len(TABLE.names)))

        page.keyboard.press(key_of(design, truth[0]))
        wait_answered(page, 1, 1)
        page.keyboard.press("c")  # can't tell
        wait_answered(page, 2, 2)
        page.keyboard.press("/")  # the searchable list: type, Enter picks the first match
        page.keyboard.type(truth[2])
        page.keyboard.press("Enter")
        wait_answered(page, 3, 3)
        page.keyboard.press(key_of(design, truth[3]))
        wait_answered(page, KILLED_AFTER, KILLED_AFTER)
        page.keyboard.press("ArrowLeft")
        assert panel_data(page, "index") == str(KILLED_AFTER - 1)
        page.keyboard.press("]")
        assert panel_data(page, "index") == str(KILLED_AFTER)
        assert page.inner_text("#labelling-counts").startswith(f"{KILLED_AFTER} / {POINTS} answered")
        assert page.eval_on_selector("#labelling-progress", "bar => [bar.value, bar.max]") == [KILLED_AFTER, POINTS]
        assert errors == []
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    given = [truth[0], CANNOT_TELL, truth[2], truth[3]] + [""] * (POINTS - KILLED_AFTER)
    assert references(csv_path) == dict(zip(ids, given))

    with viewer_server(output, design_path, "--show-map-class") as (process, url):
        open_labelling(page, url)
        assert panel_data(page, "index") == str(KILLED_AFTER)  # resumes at point k + 1
        assert panel_data(page, "pointId") == str(ids[KILLED_AFTER])
        assert page.inner_text("#labelling-map-class") == f"map class: {truth[KILLED_AFTER]}"
        wait_drawn(page)
        centre = page.evaluate("(() => { const c = landcoverViewer.map.getCenter(); return [c.lng, c.lat]; })()")
        point = design["points"][KILLED_AFTER]
        assert centre == pytest.approx([point["lon"], point["lat"]], abs=1e-5)  # flown to the point
        assert page.is_visible(".labelling-marker")
        page.evaluate("landcoverViewer.labelling.answer('moon')")  # as a stale page might send: refused, shown
        assert "not saved: reference 'moon': not a class of the sample" in page.inner_text("#labelling-message")
        assert panel_data(page, "index") == str(KILLED_AFTER)
        for index in range(KILLED_AFTER, POINTS):
            page.keyboard.press(key_of(design, truth[index]))
            wait_answered(page, index + 1, None)
        assert "every point has an answer" in page.inner_text("#labelling-message")
        for _ in range(POINTS - 1 - 1):  # back to the point answered can't tell
            page.keyboard.press("[")
        assert panel_data(page, "pointId") == str(ids[1])
        page.keyboard.press(key_of(design, truth[1]))
        page.wait_for_function("document.querySelector('#labelling-counts').textContent.includes(' 0 can\\'t tell')")
        assert errors == []

    assert references(csv_path) == dict(zip(ids, truth))
    assessed = subprocess.run(
        [sys.executable, "-m", "landcover.cli.assess", "--sample", str(csv_path), "--design", str(design_path)]
        + ["--output", str(tmp_path / "assessment")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert assessed.returncode == 0, assessed.stderr
    assert f"assess: {POINTS} points, overall accuracy 1.000" in assessed.stdout
    report = json.loads((tmp_path / "assessment" / "assessment.json").read_text())
    assert (report["points_labelled"], report["points_left_out"]) == (POINTS, 0)
