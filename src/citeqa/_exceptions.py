"""Errors raised by citeqa.

Every error is a ``CiteqaError``; callers that only want to report a clean
message catch that one class. The tree::

    CiteqaError
     ├── InvalidInputError      a parameter or question is out of range
     ├── DocumentError          a document cannot be read (missing, not UTF-8, empty)
     │    ├── DocumentNotFoundError   no document with that id in the index
     │    └── DocumentConflictError   the change clashes with the index (an id taken by
     │                                another source, deleting the last document)
     └── IndexStoreError          the on-disk index cannot be used
          ├── IndexNotFoundError      no index at that path yet
          ├── IndexMismatchError      built with another model, dimension or format
          ├── IndexCorruptError       files missing, truncated or failing their checksum
          └── IndexBusyError          another process is writing it

Messages say what went wrong and what to do next.
"""

from __future__ import annotations


class CiteqaError(Exception):
    """Root of every error citeqa raises on purpose."""


class InvalidInputError(CiteqaError, ValueError):
    """A question or parameter is outside its allowed range."""


class DocumentError(CiteqaError):
    """A document cannot be loaded or accepted."""


class DocumentNotFoundError(DocumentError, KeyError):
    """No document with the given id is in the index."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DocumentConflictError(DocumentError):
    """The change conflicts with the documents the index holds now."""


class IndexStoreError(CiteqaError):
    """The on-disk index cannot be used."""


class IndexNotFoundError(IndexStoreError):
    """There is no index at the given location."""


class IndexMismatchError(IndexStoreError):
    """The index was built with a different model, dimension or format."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        #: the mismatch alone, without the advice: ``citeqa index`` rebuilds anyway
        self.reason = reason or message


class IndexCorruptError(IndexStoreError):
    """Index files are missing, truncated or fail their checksums."""


class IndexBusyError(IndexStoreError):
    """Another process is writing the index; try again when it is done."""
