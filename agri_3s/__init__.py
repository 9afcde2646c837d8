"""agri_3s — Sentinel-2 underwriting verification and loss assessment for crop insurance.

Layer order (each module imports only from layers above it)::

    core (errors, units, crs, types)
      <- parcels <- sources <- timeseries <- decisions <- outputs <- pipeline, cli
"""

__version__ = "0.1.0"
