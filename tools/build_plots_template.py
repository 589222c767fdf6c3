"""Build .dvc/plots/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined.

DVC's default page loads those scripts from a CDN, so on a machine without internet (an offline
cluster, or CI here) `dvc plots show` writes a page whose charts never draw. This template, set
as `plots.html_template` in .dvc/config, makes every page self-contained. It also draws charts as
SVG (visible in the DOM, so tests can check them) and marks each image once it has loaded.

Regenerate (same versions as dvc-render's CDN tags):
    cd "$(mktemp -d)" && for p in vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2; do npm pack -q $p; done \
      && for f in *.tgz; do tar xzf $f; mv package ${f%.tgz}; done && python /path/to/tools/build_plots_template.py .
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "vega-5.20.2/build/vega.min.js",
    "vega-lite-5.2.0/build/vega-lite.min.js",
    "vega-embed-6.18.2/build/vega-embed.min.js",
)

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
<!-- vendored scripts -->
    <script>
        // SVG rather than canvas: drawn charts are then part of the DOM, where checks can see them.
        const embedVega = vegaEmbed;
        window.vegaEmbed = (target, spec, options) =>
            embedVega(target, spec, Object.assign({renderer: "svg", actions: false}, options));
        // Mark every image as loaded or broken once the page is done, for headless checks.
        window.addEventListener("load", () => document.querySelectorAll("img").forEach(
            (image) => { image.dataset.loaded = String(image.complete && image.naturalWidth > 0); }));
    </script>
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main(unpacked: Path) -> None:
    inlined = "\n".join(
        f"    <script>/* {name.split('/')[0]} */\n{(unpacked / name).read_text()}\n    </script>" for name in SCRIPTS
    )
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
        if placeholder in inlined:
            sys.exit(f"error: a vendored script contains {placeholder}, which DVC would replace")
    out = REPO / ".dvc" / "plots" / "offline.html"
    out.parent.mkdir(exist_ok=True)
    out.write_text(PAGE.replace("<!-- vendored scripts -->", inlined))
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
