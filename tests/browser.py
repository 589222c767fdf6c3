"""Render a `dvc plots show` page in headless Chromium and say which plots did not draw."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# No network here: without these flags Chromium keeps trying (and failing) to reach Google's hosts.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    "--virtual-time-budget=15000",
    "--dump-dom",
)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class TreeBuilder(HTMLParser):
    """A DOM tree of elements; script text is not parsed for tags (HTMLParser treats it as CDATA)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return


def render(page: Path, browser: str) -> str:
    """The page's DOM after its scripts ran."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return result.stdout


def undrawn_plots(page: Path, browser: str) -> tuple[int, int, list[str]]:
    """(charts, images, problems): each chart must hold drawn lines, each image must have loaded."""
    # Charts are counted from their containers (a div holding a vega spec), not from the calls that
    # draw them, so a page whose drawing call is missing or broken still owes that chart.
    chart_ids = re.findall(r'<div id\s*=\s*"([^"]+)">\s*<script[^>]*>\s*var spec\s*=', page.read_text())
    builder = TreeBuilder()
    builder.feed(render(page, browser))
    by_id = {node.attrs["id"]: node for node in builder.root.walk() if "id" in node.attrs}
    problems = []
    for chart_id in chart_ids:
        node = by_id.get(chart_id)
        lines = [
            path
            for group in (node.walk() if node else [])
            if "mark-line" in group.attrs.get("class", "")
            for path in group.walk()
            if path.tag == "path" and path.attrs.get("d", "").startswith("M")
        ]
        if not lines:
            problems.append(f"chart {chart_id}: no line was drawn")
    images = [node for node in builder.root.walk() if node.tag == "img"]
    problems += [
        f"image {image.attrs.get('src', '')[:60]}: did not load"
        for image in images
        if image.attrs.get("data-loaded") != "true"
    ]
    return len(chart_ids), len(images), problems
