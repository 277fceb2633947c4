"""Minimal DeepZoom tile server on openslide-python, the bench's baseline.

Serves what openslide-python's own examples/deepzoom/deepzoom_server.py
serves for one slide, without Flask's routing overhead:
  GET /slide.dzi                      DZI XML
  GET /slide_files/{level}/{col}_{row}.jpeg
Tiles come from DeepZoomGenerator(slide, tile_size, overlap, limit_bounds) and
are saved as JPEG at the same quality as deepzoom_server (75).

Run by bench/tiles/run.py under gunicorn (sync workers):
  BENCH_SLIDE=/abs/big.tiff gunicorn -w 2 -k sync --chdir bench/tiles osapp:app
Each worker opens the slide itself at import (no --preload), since OpenSlide
handles must not cross a fork.
"""

import io
import os
import re

import openslide
from openslide.deepzoom import DeepZoomGenerator

SLIDE = os.environ["BENCH_SLIDE"]
TILE_SIZE = int(os.environ.get("BENCH_TILE_SIZE", "256"))
OVERLAP = int(os.environ.get("BENCH_OVERLAP", "0"))
QUALITY = int(os.environ.get("BENCH_QUALITY", "75"))

_slide = openslide.OpenSlide(SLIDE)
_dz = DeepZoomGenerator(_slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)
_TILE = re.compile(r"^/slide_files/(\d+)/(\d+)_(\d+)\.(jpeg|jpg)$")


def _reply(start_response, status, ctype, body):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/slide.dzi":
        return _reply(start_response, "200 OK", "application/xml", _dz.get_dzi("jpeg").encode())
    m = _TILE.match(path)
    if not m:
        return _reply(start_response, "404 Not Found", "text/plain", b"not found\n")
    level, col, row = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        tile = _dz.get_tile(level, (col, row))
    except ValueError:
        return _reply(start_response, "404 Not Found", "text/plain", b"no such tile\n")
    buf = io.BytesIO()
    tile.save(buf, "jpeg", quality=QUALITY)
    return _reply(start_response, "200 OK", "image/jpeg", buf.getvalue())
