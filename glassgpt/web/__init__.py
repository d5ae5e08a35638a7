"""The explorer: a local web page to watch a model think (`glassgpt serve`).

`create_app(...)` builds the FastAPI app: a JSON API (documented at /docs) and one page
whose HTML/JS/CSS ship in `static/` (no CDN, no build step). The API sends plain JSON
that a notebook could render too.
"""

from .app import create_app
from .limits import Limits

__all__ = ["create_app", "Limits"]
