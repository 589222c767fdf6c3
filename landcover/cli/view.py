"""view: any output folder of landcover-map, landcover-region or landcover-change in the browser (docs/viewer.md).

    landcover-view out/                     # a free port, the page opened in the browser
    landcover-view region/ --port 8800 --no-browser
    landcover-view region/ --sample sample/sample_design.json     # label the assessment sample
    (the same as python -m landcover.cli.view ...; needs `make install-viewer`)

A local server on 127.0.0.1 serves the page (MapLibre GL JS, from viewer/node_modules: no internet needed) and
the output's maps as Web Mercator tiles read by rio-tiler: the input imagery, the class map, the confidence where
written, a change map with its from-to legend and the two dates side by side, a region's scene outlines, the area
table; a click shows a pixel's class, confidence and coordinates. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import webbrowser
from pathlib import Path

from landcover.geo.area_report import ids_text
from landcover.geo.georaster import warn
from landcover.io.errors import run_stage
from landcover.viewer.outputs import open_output, require_viewer_group


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="an output folder of landcover-map, landcover-region or -change")
    parser.add_argument("--port", type=port_number, default=0, help="the port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL only; open no browser")
    parser.add_argument(
        "--sample", type=Path, metavar="DESIGN.json", help="label this sample design's points (labelling mode)"
    )
    parser.add_argument(
        "--show-map-class", action="store_true", help="labelling mode: show each point's map class (hidden: no bias)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.show_map_class and args.sample is None:
        arguments.error("--show-map-class: only with --sample")
    require_viewer_group()
    from landcover.viewer.server import Viewer, ViewerServer, require_maplibre

    require_maplibre()
    output = open_output(args.output)
    session = None
    if args.sample is not None:
        from landcover.viewer.labelling import LabellingSession

        session = LabellingSession.open(args.sample, show_map_class=args.show_map_class)
    viewer = Viewer(output, session)
    if session is not None:
        outside = session.points_outside(viewer.bounds)
        if outside:
            warn(
                f"{args.sample}: {len(outside)} of {len(session.point_ids)} points (ids {ids_text(outside)}) lie "
                f"outside {args.output}'s maps: nothing there to label them from (view the output it was drawn from)"
            )
    with ViewerServer(viewer, args.port) as server:
        print(f"view: {output.command} output {args.output} at {server.url} (Ctrl-C stops)", flush=True)
        if not args.no_browser:
            webbrowser.open(server.url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("view: stopped")


def console_main() -> None:
    """The `landcover-view` console script."""
    run_stage(main)


if __name__ == "__main__":
    run_stage(main)
