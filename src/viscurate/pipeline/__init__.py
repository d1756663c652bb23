"""viscurate.pipeline: runs stages over a dataset, resumable, on local processes.

>>> from viscurate.pipeline import ingest, IngestReport
"""
from .ingest import PROFILE_FIELDS_PLUS, IngestReport, ingest
from .pool import ItemError, ProcessPool

__all__ = ["PROFILE_FIELDS_PLUS", "IngestReport", "ItemError", "ProcessPool", "ingest"]
