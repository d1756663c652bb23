"""Exceptions raised by viscurate. Every error a user can cause has its own class and a message that says
what to do next; nothing here is raised for our own bugs."""


class ViscurateError(Exception):
    """Base class of every error viscurate raises on purpose."""


class DatasetNotFound(ViscurateError):
    """The named dataset does not exist in the workspace."""


class SampleNotFound(ViscurateError):
    """No sample with that ``_id`` in the dataset."""


class DatasetExists(ViscurateError):
    """A dataset with that name already exists."""


class DatasetBusy(ViscurateError):
    """Another process holds the dataset for writing and did not let go within the timeout."""


class SchemaVersionError(ViscurateError):
    """The dataset was written by an incompatible version of viscurate."""


class QueryError(ViscurateError):
    """The query is malformed (wrong shape, wrong operand type)."""


class UnsupportedOperator(QueryError):
    """The query uses an operator or construct viscurate does not support; the message names it."""


class FieldTypeError(ViscurateError):
    """A value does not fit the declared type of a schema field."""
