"""The map viewer of every output (docs/viewer.md): which output a folder holds (outputs), its tiles and pixel values
read by rio-tiler (tiles), and the local web server with its page (server, static/)."""

from __future__ import annotations

from landcover.io.errors import PipelineError


def require_viewer_group() -> None:
    """rio-tiler, or one line saying how to install it."""
    try:
        import rio_tiler  # noqa: F401
    except ImportError:
        raise PipelineError(
            "landcover-view reads tiles with rio-tiler, an optional dependency: install it with `make install-viewer`"
        ) from None
