"""The loss adjuster's map: one self-contained, offline HTML file per map.

* :mod:`.page` — :func:`build_map` / :func:`write_map`: parcels coloured by verdict and loss
  grade, popups and NDVI charts built in the page, search, "where am I", legend.
* :mod:`.data` — the compact data block (quantised geometry, coded values).
* :mod:`.imagery` — Sentinel-2 image layers from the job's own looks.
* :mod:`.assets` — Leaflet (installed from the npm registry with ``npm ci``) and the page script.
* :mod:`.results` — reading result folders, refusing results that do not belong together.
* :mod:`.split` — one map per partition plus an index map when one file cannot serve.
"""

from .imagery import ImageLayer, job_imagery, load_imagery, save_imagery
from .labels import LANGS
from .page import MapPage, RasterOverlay, build_map, write_map
from .split import MAX_PARCELS_PER_MAP, write_maps

__all__ = ["LANGS", "ImageLayer", "MapPage", "RasterOverlay", "MAX_PARCELS_PER_MAP",
           "build_map", "job_imagery", "load_imagery", "save_imagery", "write_map",
           "write_maps"]
