"""viscurate: a visual data engine for computer-vision teams.

>>> import viscurate
>>> ds = viscurate.Dataset.create("pets")            # doctest: +SKIP
>>> ds.add_images("~/photos")                         # doctest: +SKIP
>>> ds.find({"width": {"$gt": 1000}}, page=1)         # doctest: +SKIP
"""
from ._version import __version__  # noqa: E402

from .errors import (  # noqa: E402
    DatasetBusy, DatasetExists, DatasetNotFound, FieldTypeError, QueryError, SampleNotFound, UnsupportedOperator,
    ViscurateError,
)

__all__ = ["Dataset", "ViscurateError", "DatasetBusy", "DatasetExists", "DatasetNotFound", "FieldTypeError",
           "QueryError", "SampleNotFound", "UnsupportedOperator", "__version__"]


def __getattr__(name: str):
    # lazy, so that worker processes (which import viscurate.media) never load duckdb and pyarrow
    if name == "Dataset":
        from .dataset import Dataset
        return Dataset
    raise AttributeError(f"module 'viscurate' has no attribute {name!r}")
