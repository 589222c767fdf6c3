"""The map viewer of every output (docs/viewer.md): which output a folder holds and what it shows (outputs), its
tiles and pixel values read by rio-tiler (tiles), and the local web server with its page (server, static/)."""
