"""Where a scene lives: a local file or a remote object, told apart in one place and read through GDAL.

| given | kind | GDAL opens |
|---|---|---|
| a path (`scenes/a.tif`), `file:///data/a.tif` | local | the path |
| `http://...`, `https://...` | remote | `/vsicurl/<url>` |
| `s3://bucket/key`, `gs://bucket/key` | remote | `/vsis3/bucket/key`, `/vsigs/bucket/key` |
| `/vsicurl/<url>`, `/vsis3/...`, `/vsigs/...`, `/vsiaz/...` | remote | itself |

A remote raster is never downloaded: GDAL reads the byte ranges the mapping asks for (a COG's header, then
the tiles of each strip), under REMOTE_OPTIONS. Only a remote JPEG or PNG is copied to a temporary file
first, because those are decoded whole by Pillow (io.imageio), as training decoded them.

A source's identity is what resuming compares: a local file's sha256 (reused while its path, size and
modification time are those it was hashed at, so an unchanged file is not read again), a remote object's
ETag and size as its store answers GDAL.

This is io's, the lowest layer: the mapping (geo) opens sources and the region engine (region) names and
resumes them, and both may import io. Nothing in the DVC stages reads remote scenes, so no stage imports it.

rasterio exposes none of GDAL's calls for virtual files (an object's headers, its bytes, dropping GDAL's
cache of it), so GdalFiles makes those few through ctypes on the GDAL library rasterio has loaded: one GDAL,
configured by the same rasterio.Env (credentials, endpoints, retries) as the reads of the pixels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from landcover.io.digests import file_sha256
from landcover.io.errors import PipelineError
from landcover.io.rasters import (
    GDAL_OPTIONS,
    JPEG_PNG_SIGNATURES,
    RASTER_ERRORS,
    is_jpeg_or_png,
    limit_gdal,
    open_raster,
    raster_error,
)

# GDAL's virtual file systems a source may name, and the URL schemes read: how GDAL names a URL's object
# (/vsicurl/ takes the whole URL, a store's file system bucket/key; a file:// URL is a local path)
GDAL_PREFIXES = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")
URL_SCHEMES = {
    "file": "",
    "http": "/vsicurl/{url}",
    "https": "/vsicurl/{url}",
    "s3": "/vsis3/{key}",
    "gs": "/vsigs/{key}",
}
URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
ACCEPTED = "local paths, file://, http(s)://, s3:// and gs:// URLs, and GDAL's " + ", ".join(GDAL_PREFIXES) + " paths"
# No CPL_VSIL_CURL_ALLOWED_EXTENSIONS: EMPTY_DIR already keeps GDAL from asking for sidecar files (.aux.xml,
# .ovr, .msk), and a list of extensions would refuse signed URLs and keys without one.
REMOTE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the object's "folder" in search of sidecars
    "GDAL_HTTP_MAX_RETRY": 3,  # a 429, 502, 503 or 504 answer is retried
    "GDAL_HTTP_RETRY_DELAY": 1,  # seconds, doubled at each retry
    "GDAL_HTTP_CONNECTTIMEOUT": 30,
}
COPY_CHUNK = 1 << 20
SIGNATURE_BYTES = max(map(len, JPEG_PNG_SIGNATURES))  # a remote object's first bytes tell a JPEG or PNG


@dataclass(frozen=True)
class SourceIdentity:
    """What resuming compares (`content`), and for a local file the stat it was hashed at (`seen`)."""

    content: dict
    seen: dict | None = None


@dataclass(frozen=True)
class Source:
    """A scene's location: `text` as given (messages name it), `gdal_path` what GDAL opens."""

    text: str
    gdal_path: str

    def __str__(self) -> str:
        return self.text

    @property
    def is_local(self) -> bool:
        return not self.gdal_path.startswith(GDAL_PREFIXES)

    @property
    def is_plain_path(self) -> bool:
        """Given as a path (not as a URL or GDAL path): a relative one is relative to some folder."""
        return self.is_local and self.gdal_path == self.text

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise ValueError(f"{self}: not a local file")
        return Path(self.gdal_path)

    @property
    def name(self) -> str:
        """The file's name (outputs are named after it): a URL's without its query."""
        if self.is_local:
            return self.local_path.name
        location = self.gdal_path.removeprefix("/vsicurl/")
        return Path(unquote(urlsplit(location).path) if URL.match(location) else location).name

    def identity(self, cached: SourceIdentity | None = None) -> SourceIdentity:
        """The identity resuming compares; `cached` (a record's) is reused for a local file still as it was seen."""
        return local_identity(self.local_path, cached) if self.is_local else remote_identity(self)

    @contextmanager
    def open_raster(self) -> Iterator:
        """The rasterio dataset, open for reading; remote ranges are read under REMOTE_OPTIONS while it is open."""
        if self.is_local:
            with open_raster(self.local_path) as dataset:
                yield dataset
            return
        limit_gdal()
        with remote_env():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # said, where it matters, by the caller
                    dataset = rasterio.open(self.gdal_path)
            except RASTER_ERRORS as error:
                raise read_error(self, error) from None
            with dataset:
                yield dataset

    def is_jpeg_or_png(self) -> bool:
        """By its first bytes, not its name (a remote object's read by GDAL); PipelineError naming a remote one
        that cannot be read."""
        if self.is_local:
            return is_jpeg_or_png(self.local_path)
        with remote_env():
            head = b"".join(gdal_files(self).read(self, SIGNATURE_BYTES))
        return head.startswith(JPEG_PNG_SIGNATURES)

    @contextmanager
    def readable(self) -> Iterator[Path | Source]:
        """What the mapping reads: a local file's path, a remote raster itself, a remote JPEG or PNG's copy in a
        temporary folder (named as the object: outputs are named after it), removed on leaving."""
        if self.is_local:
            yield self.local_path
            return
        if not self.is_jpeg_or_png():
            yield self
            return
        folder = tempfile.mkdtemp(prefix="landcover-source-")
        try:
            copy = Path(folder) / self.name
            with remote_env(), open(copy, "wb") as file:
                for chunk in gdal_files(self).read(self):
                    file.write(chunk)
            yield copy
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def parse_source(text: str) -> Source:
    """The source `text` names; PipelineError naming it for a scheme or GDAL file system not read here."""
    if text.startswith(GDAL_PREFIXES):
        return Source(text, text)
    match = URL.match(text)
    if match is None:
        if text.startswith("/vsi"):
            system = text.split("/")[1]
            raise PipelineError(f"{text}: GDAL file system /{system}/ is not read here; sources are {ACCEPTED}")
        return Source(text, text)  # a local path
    scheme = match[1].lower()
    if scheme not in URL_SCHEMES:
        raise PipelineError(f"{text}: scheme {scheme}:// is not read here; sources are {ACCEPTED}")
    if scheme == "file":
        return Source(text, unquote(urlsplit(text).path))
    return Source(text, URL_SCHEMES[scheme].format(url=text, key=text[match.end() :]))


def located(text: str, folder: Path | None = None) -> Source:
    """The source `text` names, a relative path taken from `folder` (default: this process's folder) and made
    absolute: workers may run elsewhere."""
    source = parse_source(text)
    if not source.is_plain_path or os.path.isabs(text):
        return source
    path = os.path.abspath(os.path.join(folder or "", text))
    return Source(path, path)


def read_error(where: Path | Source, error: BaseException) -> PipelineError:
    """One line naming the file or source, in GDAL's own words (io.rasters.raster_error's for a path)."""
    if isinstance(where, Path):
        return raster_error(where, error)
    return PipelineError(f"{where}: cannot read raster ({innermost(error)})")


def innermost(error: BaseException) -> BaseException:
    """The error at the root of `error`'s chain: GDAL's own, which says most."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return error


def local_identity(path: Path, cached: SourceIdentity | None) -> SourceIdentity:
    """The file's sha256; `cached` where path, size and modification time are still those it was hashed at
    (stat before hashing: a file written meanwhile has another modification time next time)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    seen = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if cached is not None and cached.seen == seen:
        return cached
    return SourceIdentity({"sha256": file_sha256(path)}, seen)


def remote_identity(source: Source) -> SourceIdentity:
    """The object's ETag and size (and Last-Modified where it has no ETag), as its store answers GDAL now:
    GDAL's cache of it is dropped first, so that a replaced object is seen and read anew."""
    files = gdal_files(source)
    with remote_env():
        files.forget(source.gdal_path)
        headers = files.headers(source.gdal_path)
    if headers is None:
        raise PipelineError(f"{source}: cannot read it ({unreadable_reason(source)})")
    whole = headers.get("content-range", "").rpartition("/")[2]  # a ranged GET's answer: bytes a-b/<size>
    size = whole if whole.isdigit() else headers.get("content-length")
    content: dict = {"source": source.text, "size": None if size is None else int(size), "etag": headers.get("etag")}
    if content["etag"] is None:
        content["last_modified"] = headers.get("last-modified")
        if content["last_modified"] is None:
            content["unversioned"] = secrets.token_hex(8)  # nothing tells versions apart: never resumed
    return SourceIdentity(content)


def unreadable_reason(source: Source) -> str:
    """Why GDAL cannot read the object, as opening it says (a 404, a refused connection, missing credentials):
    its request for the headers alone sets no message for most of these. GDAL's memory of that failed request
    is dropped first, or the open would only say the object does not exist."""
    gdal_files(source).forget(source.gdal_path)
    try:
        with remote_env(), rasterio.open(source.gdal_path):
            return "its store answered without headers"
    except RASTER_ERRORS as error:
        return str(innermost(error))


def remote_env() -> rasterio.Env:
    return rasterio.Env(**GDAL_OPTIONS, **REMOTE_OPTIONS)


class GdalFiles:
    """GDAL's C calls for virtual files that rasterio does not expose, through ctypes."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.gdal = library
        pointer, text = ctypes.c_void_p, ctypes.c_char_p
        for name, result, arguments in (
            ("VSIGetFileMetadata", ctypes.POINTER(text), [text, text, pointer]),
            ("VSICurlPartialClearCache", None, [text]),
            ("VSIFOpenL", pointer, [text, text]),
            ("VSIFReadL", ctypes.c_size_t, [pointer, ctypes.c_size_t, ctypes.c_size_t, pointer]),
            ("VSIFCloseL", ctypes.c_int, [pointer]),
            ("CSLDestroy", None, [pointer]),
            ("CPLErrorReset", None, []),
            ("CPLPushErrorHandler", None, [pointer]),
            ("CPLPopErrorHandler", None, []),
            ("CPLGetLastErrorMsg", text, []),
        ):
            function = getattr(library, name)
            function.restype, function.argtypes = result, arguments
        self.quiet_handler = ctypes.cast(library.CPLQuietErrorHandler, pointer)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """GDAL's errors kept as its last error, not printed (callers report them in their one line)."""
        self.gdal.CPLErrorReset()
        self.gdal.CPLPushErrorHandler(self.quiet_handler)
        try:
            yield
        finally:
            self.gdal.CPLPopErrorHandler()

    def headers(self, path: str) -> dict[str, str] | None:
        """The HTTP headers of the object's answer to GDAL (names in lower case); None where there is none."""
        with self.quiet():
            found = self.gdal.VSIGetFileMetadata(path.encode(), b"HEADERS", None)
        if not found:
            return None
        headers, index = {}, 0
        while found[index] is not None:
            name, _, value = found[index].decode("utf-8", "replace").partition("=")
            headers[name.strip().lower()] = value.strip()
            index += 1
        self.gdal.CSLDestroy(ctypes.cast(found, ctypes.c_void_p))
        return headers

    def forget(self, path: str) -> None:
        """Drop what GDAL has cached of the object (its size, its blocks): the next reads ask the store."""
        with self.quiet():  # a store's file system names the object's URL first, which needs credentials
            self.gdal.VSICurlPartialClearCache(path.encode())

    def read(self, source: Source, size: int | None = None) -> Iterator[bytes]:
        """The object's bytes (its first `size`), a chunk at a time; PipelineError naming it where it cannot be
        opened."""
        with self.quiet():
            handle = self.gdal.VSIFOpenL(source.gdal_path.encode(), b"rb")
        if not handle:
            raise PipelineError(f"{source}: cannot read it ({self.last_error() or 'no such object'})")
        buffer = ctypes.create_string_buffer(COPY_CHUNK if size is None else size)
        try:
            while count := self.gdal.VSIFReadL(buffer, 1, len(buffer), handle):
                yield buffer.raw[:count]
                if size is not None:
                    return
        finally:
            self.gdal.VSIFCloseL(handle)

    def last_error(self) -> str:
        return (self.gdal.CPLGetLastErrorMsg() or b"").decode("utf-8", "replace")


def gdal_files(source: Source) -> GdalFiles:
    """GdalFiles on rasterio's GDAL; PipelineError naming the source where that library cannot be found."""
    library = gdal_library_path()
    if library is None:
        raise PipelineError(f"{source}: cannot reach remote sources: GDAL's library is not found in this process")
    return _gdal_files(library)


@lru_cache(maxsize=1)
def _gdal_files(library: str) -> GdalFiles:
    return GdalFiles(ctypes.CDLL(library))


@lru_cache(maxsize=1)
def gdal_library_path() -> str | None:
    """The GDAL library rasterio loaded, the one its options configure: the one its wheel bundles, else (a GDAL
    of the system) the one this process mapped, else the system's. Another wheel's bundled GDAL (pyogrio's, in a
    folder of its own like `pyogrio.libs/`) is another library with its own options and caches, never this one."""
    package = Path(rasterio.__file__).parent
    bundled = sorted([*package.parent.glob("rasterio.libs/libgdal*"), *package.glob(".dylibs/libgdal*")])
    if bundled:
        return str(bundled[0])
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and "/libgdal" in fields[5] and ".libs/" not in fields[5]:
                    return fields[5].strip()
    except OSError:
        pass
    return ctypes.util.find_library("gdal")
