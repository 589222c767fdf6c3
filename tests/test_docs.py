"""README.md and the pages under docs/: every page reachable from the README, every relative link resolving,
and a README short enough to be read to the end."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 300

# [text](target) and ![alt](target), target up to the first space or closing parenthesis (an optional
# "title" after a space is ignored); code spans and fenced blocks are removed first
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"(`+).+?\1", flags=re.DOTALL)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", flags=re.MULTILINE)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(path: Path) -> str:
    """The page without fenced blocks and code spans, where link-like text is not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def links(path: Path) -> list[str]:
    return LINK.findall(prose(path))


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE) and not target.startswith("//")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but hyphens and underscores dropped, spaces as
    hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_the_docs_folder_has_pages():
    assert sorted(DOCS.glob("*.md")), "docs/ holds no pages"


def test_the_readme_is_under_300_lines():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move detail into a page under docs/"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (README.parent / unquote(target.split("#", 1)[0])).resolve()
        for target in links(README)
        if is_relative(target) and target.split("#", 1)[0]
    }
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"docs pages not linked from README.md: {unlinked}"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        if not is_relative(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
        if not destination.exists():
            broken.append(f"{target}: no file {destination}")
        elif not destination.is_relative_to(REPO.resolve()):
            broken.append(f"{target}: points outside the repository")
        elif anchor and destination.suffix == ".md" and unquote(anchor).lower() not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(REPO.resolve())}")
    assert not broken, f"{page.relative_to(REPO)}: broken links:\n" + "\n".join(broken)


def test_the_link_checker_sees_links_and_anchors(tmp_path):
    """The checks above would pass vacuously if no link were found: make sure they see these."""
    page = tmp_path / "page.md"
    page.write_text(
        "# The model as an artifact\n\n## What the real size costs (`make bench-scale`)\n\n"
        '[a](docs/data.md) ![b](plots/x.png "title") `[not](a-link.md)`\n\n```\n[nor](this.md)\n```\n'
    )
    assert links(page) == ["docs/data.md", "plots/x.png"]
    assert anchors(page) == {"the-model-as-an-artifact", "what-the-real-size-costs-make-bench-scale"}
    assert not is_relative("https://example.com/x.md") and is_relative("../README.md")


def core_modules() -> dict[str, set[str]]:
    """{package: its modules} of landcover/, as the folders hold them."""
    core = REPO / "landcover"
    return {
        package.name: {module.stem for module in package.glob("*.py") if module.name != "__init__.py"}
        for package in sorted(core.iterdir())
        if (package / "__init__.py").exists()
    }


def test_the_readme_module_map_matches_the_folders():
    rows = re.findall(r"^\| `(\w+)/` \| ([^|]*) \|", README.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = {package: set(re.findall(r"`(\w+)`", modules)) for package, modules in rows}
    assert documented == core_modules()


def test_the_development_page_lists_every_core_module():
    page = (DOCS / "development.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(\w+/\w+)\.py` \|", page, flags=re.MULTILINE))
    actual = {f"{package}/{module}" for package, modules in core_modules().items() for module in modules}
    assert documented == actual
