"""An HTTP server on 127.0.0.1 for the tests of remote sources: objects by path, HEAD, and GETs of the whole
object or of one byte range (`Range: bytes=a-b` -> 206 with Content-Range), each request logged with the
bytes it was sent. It serves on a free port in a thread of its own until `close`; every connection times out
after CONNECTION_SECONDS of silence, and a request for anything but one range is refused (416)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONNECTION_SECONDS = 10
RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Served:
    """An object: its bytes and ETag (None: the answers carry none)."""

    body: bytes
    etag: str | None = '"v1"'


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None
    sent: int  # bytes of body sent


@dataclass
class RangeServer:
    objects: dict[str, Served] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def log(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def taken(self) -> list[Request]:
        """The requests logged since the last call, which clears the log."""
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=CONNECTION_SECONDS)


def handler_for(served: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as GDAL's reads use it
        timeout = CONNECTION_SECONDS

        def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
            pass

        def do_HEAD(self) -> None:
            self.answer(send_body=False)

        def do_GET(self) -> None:
            self.answer(send_body=True)

        def answer(self, send_body: bool) -> None:
            found = served.objects.get(self.path)
            wanted = self.headers.get("Range")
            if found is None:
                return self.finish_answer(404, {}, b"", wanted, send_body)
            size = len(found.body)
            start, end = 0, size - 1
            match = RANGE.fullmatch(wanted) if wanted else None
            if wanted and (match is None or int(match[1]) >= size):
                return self.finish_answer(416, {"Content-Range": f"bytes */{size}"}, b"", wanted, send_body)
            headers = {"Accept-Ranges": "bytes"} | ({"ETag": found.etag} if found.etag else {})
            if match is not None:
                start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.finish_answer(206 if match else 200, headers, found.body[start : end + 1], wanted, send_body)

        def finish_answer(self, status: int, headers: dict, body: bytes, wanted: str | None, send_body: bool) -> None:
            # logged before answering: the client goes on as soon as it has the answer, and a test then reads the log
            served.log(Request(self.command, self.path, wanted, len(body) if send_body else 0))
            self.send_response(status)
            for name, value in (headers | {"Content-Length": str(len(body))}).items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler
