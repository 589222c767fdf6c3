"""The viewer's local web server: the standard library's ThreadingHTTPServer on 127.0.0.1, a request per thread.

Routes (ROUTES), all GET but the labelling answer:
    /                          the page (static/index.html)
    /static/<file>             the page's scripts and styles (static/; labelling.js is the labelling mode's)
    /maplibre/<file>           MapLibre GL JS from viewer/node_modules (npm ci of viewer/package-lock.json)
    /api/config                what the output holds: layers, legends, area tables, scene outlines, labelling
    /tiles/<layer>/<z>/<x>/<y>.png   a layer's Web Mercator tile (viewer.tiles)
    /api/point?lon=&lat=       each class, change and confidence layer's value at a point
    /api/labelling             the labelling session's state (with --sample)
    POST /api/labelling/answer {"point_id", "reference"}: the session records the answer; its state back (a body
                               that is not Content-Type application/json: HTTP 415)
JSON replies; a bad request gets HTTP 400 with {"error": message}, an unknown path 404, a request addressed to
any host name but 127.0.0.1 or localhost 403.
"""

from __future__ import annotations

import errno
import json
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from landcover.io.errors import PipelineError, one_line
from landcover.viewer.outputs import CHANGE, CLASSES, CONFIDENCE, IMAGERY, ViewedOutput, colour_hex
from landcover.viewer.tiles import CONFIDENCE_RAMP, TiledLayer, confidence_colormap, empty_tile

HOST = "127.0.0.1"
LOCAL_NAMES = (HOST, "localhost")  # the names a request may address the server by (its Host header)
STATIC = Path(__file__).resolve().parent / "static"
# `make install-viewer` puts MapLibre here (npm ci --prefix viewer): served as it is, so the page works offline
MAPLIBRE = Path(__file__).resolve().parents[2] / "viewer" / "node_modules" / "maplibre-gl" / "dist"
MAPLIBRE_FILES = ("maplibre-gl.js", "maplibre-gl.css")
MAX_BODY = 1 << 16  # bytes of a POST body


class LabellingSession(Protocol):
    """What the server needs of the labelling mode's session (landcover.viewer.labelling)."""

    def state(self) -> dict: ...

    def answer(self, point_id: Any, reference: Any) -> dict: ...


@dataclass
class Reply:
    body: bytes
    content_type: str = "application/json"
    status: int = HTTPStatus.OK
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(payload: object, status: int = HTTPStatus.OK) -> Reply:
    return Reply(json.dumps(payload).encode(), status=status)


def error_reply(message: str, status: int = HTTPStatus.BAD_REQUEST) -> Reply:
    return json_reply({"error": message}, status)


def require_maplibre() -> None:
    missing = [name for name in MAPLIBRE_FILES if not (MAPLIBRE / name).is_file()]
    if missing:
        raise PipelineError(f"{MAPLIBRE / missing[0]}: MapLibre GL JS is not installed; run `make install-viewer`")


class Viewer:
    """The replies to the viewer's routes for one output (and a labelling session, with --sample)."""

    def __init__(self, output: ViewedOutput, labelling: LabellingSession | None = None) -> None:
        self.output, self.labelling = output, labelling
        self.tiled = {layer.id: TiledLayer(layer) for layer in output.layers}

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """West, south, east, north in degrees of every layer together."""
        boxes = [tiled.bounds for tiled in self.tiled.values()]
        return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)

    def config(self) -> dict:
        output = self.output
        layers = []
        for layer in output.layers:
            tiled = self.tiled[layer.id]
            legend = None
            if layer.table is not None:
                values = layer.legend_values if layer.legend_values is not None else range(len(layer.table))
                legend = [
                    {"value": value, "name": layer.table.names[value], "colour": colour_hex(layer.table.colours[value])}
                    for value in values
                ]
            layers.append(
                {
                    "id": layer.id,
                    "title": layer.title,
                    "kind": layer.kind,
                    "tiles": f"/tiles/{layer.id}/{{z}}/{{x}}/{{y}}.png",
                    "bounds": list(tiled.bounds),
                    "minzoom": tiled.minzoom,
                    "maxzoom": tiled.maxzoom,
                    "legend": legend,
                    "visible": layer.visible,
                }
            )
        ramp = confidence_colormap()
        return {
            "command": output.command,
            "folder": str(output.folder),
            "title": output.folder.resolve().name,
            "bounds": list(self.bounds),
            "layers": layers,
            "areas": output.areas,
            "scenes": {"type": "FeatureCollection", "features": output.scenes},
            "swipe": None
            if output.swipe is None
            else {"before": list(output.swipe[0]), "after": list(output.swipe[1])},
            "confidence_ramp": {"name": CONFIDENCE_RAMP, "colours": [colour_hex(ramp[v]) for v in range(0, 256, 51)]},
            "labelling": self.labelling is not None,
        }

    def tile(self, layer_id: str, z: int, x: int, y: int) -> Reply:
        if layer_id not in self.tiled:
            return error_reply(f"no layer {layer_id!r}", HTTPStatus.NOT_FOUND)
        png = self.tiled[layer_id].tile_png(x, y, z)
        return Reply(png if png is not None else empty_tile(), "image/png", headers={"Cache-Control": "max-age=300"})

    def point(self, lon: float, lat: float) -> dict:
        """Each class, change and confidence layer's value at (lon, lat): class names, confidence 0..1. The class and
        change layers first, top one first as the map draws them; the confidence last, whatever its place."""
        values = []
        shown = [layer for layer in reversed(self.output.layers) if layer.kind != IMAGERY]
        for layer in sorted(shown, key=lambda layer: layer.kind == CONFIDENCE):
            value = self.tiled[layer.id].point_value(lon, lat)
            entry: dict[str, Any] = {"layer": layer.id, "title": layer.title, "kind": layer.kind, "value": value}
            if layer.kind in (CLASSES, CHANGE) and layer.table is not None and value is not None:
                entry["name"] = layer.table.names[value] if value < len(layer.table) else None
            if layer.kind == CONFIDENCE and value is not None:
                entry["confidence"] = round(value / 255, 3)
            values.append(entry)
        return {"lon": lon, "lat": lat, "values": values}


# --- routing ---

Handler = Callable[[Viewer, re.Match, dict[str, list[str]], bytes], Reply]


def static_file(folder: Path, name: str) -> Reply:
    path = folder / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return error_reply(f"no file {name!r}", HTTPStatus.NOT_FOUND)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Reply(path.read_bytes(), content_type)


def number(query: dict[str, list[str]], key: str) -> float:
    try:
        return float(query[key][0])
    except (KeyError, IndexError, ValueError):
        raise PipelineError(f"give {key} as a number") from None


def labelling_state(viewer: Viewer, match, query, body) -> Reply:
    if viewer.labelling is None:
        return error_reply("no labelling session: start landcover-view with --sample DESIGN.json", HTTPStatus.NOT_FOUND)
    return json_reply(viewer.labelling.state())


def labelling_answer(viewer: Viewer, match, query, body: bytes) -> Reply:
    if viewer.labelling is None:
        return error_reply("no labelling session: start landcover-view with --sample DESIGN.json", HTTPStatus.NOT_FOUND)
    try:
        payload = json.loads(body)
        point_id, reference = payload["point_id"], payload["reference"]
    except (ValueError, TypeError, KeyError):
        return error_reply('the body must be JSON {"point_id": ..., "reference": ...}')
    return json_reply(viewer.labelling.answer(point_id, reference))


ROUTES: list[tuple[str, re.Pattern, Handler]] = [
    ("GET", re.compile(r"/"), lambda viewer, match, query, body: static_file(STATIC, "index.html")),
    ("GET", re.compile(r"/static/([^/]+)"), lambda viewer, match, query, body: static_file(STATIC, match[1])),
    ("GET", re.compile(r"/maplibre/([^/]+)"), lambda viewer, match, query, body: static_file(MAPLIBRE, match[1])),
    ("GET", re.compile(r"/api/config"), lambda viewer, match, query, body: json_reply(viewer.config())),
    (
        "GET",
        re.compile(r"/tiles/([\w-]+)/(\d+)/(\d+)/(\d+)\.png"),
        lambda viewer, match, query, body: viewer.tile(match[1], int(match[2]), int(match[3]), int(match[4])),
    ),
    (
        "GET",
        re.compile(r"/api/point"),
        lambda viewer, match, query, body: json_reply(viewer.point(number(query, "lon"), number(query, "lat"))),
    ),
    ("GET", re.compile(r"/api/labelling"), labelling_state),
    ("POST", re.compile(r"/api/labelling/answer"), labelling_answer),
]


def route(viewer: Viewer, method: str, target: str, body: bytes = b"") -> Reply:
    """The reply to `method` `target` (path and query): a PipelineError of bad input becomes HTTP 400, any other
    error HTTP 500, each with {"error": its one line}."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    known_path = False
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(parts.path)
        if match is None:
            continue
        known_path = True
        if route_method == method:
            try:
                return handler(viewer, match, query, body)
            except PipelineError as error:
                return error_reply(one_line(error))
            except Exception as error:  # one request's failure (a map unreadable since): its reply; the server goes on
                return error_reply(
                    " ".join(f"{type(error).__name__}: {error}".split()), HTTPStatus.INTERNAL_SERVER_ERROR
                )
    if known_path:
        return error_reply(f"{method} is not allowed on {parts.path}", HTTPStatus.METHOD_NOT_ALLOWED)
    return error_reply(f"no such path: {parts.path}", HTTPStatus.NOT_FOUND)


class RequestHandler(BaseHTTPRequestHandler):
    server: ViewerServer

    def do_GET(self) -> None:
        if self.host_refused():
            return
        self.send(route(self.server.viewer, "GET", self.path))

    def do_POST(self) -> None:
        if self.host_refused():
            return
        # JSON only: another site's page in the same browser can send text or a form here unasked, but not JSON
        # without the CORS preflight this server never grants, so it cannot write labels into the sample
        if self.headers.get_content_type() != "application/json":
            self.send(
                error_reply("the body must be JSON (Content-Type: application/json)", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            )
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send(error_reply(f"the body is over {MAX_BODY} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
            return
        self.send(route(self.server.viewer, "POST", self.path, self.rfile.read(length)))

    def host_refused(self) -> bool:
        """Refuse (HTTP 403) a request not addressed to this server by its own name: a site whose name is made to
        resolve to 127.0.0.1 (DNS rebinding) would otherwise count as the page's own origin, free to read the
        output's files and post answers."""
        port = self.server.server_address[1]
        if self.headers.get("Host", "") in {f"{name}:{port}" for name in LOCAL_NAMES}:
            return False
        self.send(
            error_reply(
                f"Host {self.headers.get('Host')!r}: open the viewer at {self.server.url}", HTTPStatus.FORBIDDEN
            )
        )
        return True

    def send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the page's requests are not worth a line each."""


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, viewer: Viewer, port: int = 0) -> None:
        self.viewer = viewer
        try:
            super().__init__((HOST, port), RequestHandler)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PipelineError(f"--port {port}: the port is in use on {HOST}; choose another") from None
            if error.errno == errno.EACCES:
                raise PipelineError(f"--port {port}: no permission to listen on it; choose one above 1023") from None
            raise

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"
