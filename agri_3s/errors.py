"""One exception tree. Every message names the file / row / parcel and says how to fix it."""

from __future__ import annotations


class Agri3sError(Exception):
    """Root of every error agri_3s raises on purpose."""


class InputError(Agri3sError, ValueError):
    """Bad user input: a file, a row, a parameter. The CLI exits with code 2.

    Parameters
    ----------
    message : what is wrong.
    source : the file (or argument) it came from.
    row : the row, parcel id or key inside it, if any.
    fix : what the user should do.
    """

    def __init__(self, message: str, *, source: object = None, row: object = None, fix: str = ""):
        self.source, self.row, self.fix = source, row, fix
        where = ""
        if source is not None:
            where = f"{source}"
            if row is not None:
                where += f" (row/parcel {row})"
            where += ": "
        #: Where and what, without the fix (the CLI prints the fix on its own line).
        self.problem = where + message
        text = self.problem
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class CRSMismatchError(Agri3sError):
    """Two spatial values in different CRSs were combined without reprojection."""


class ImageryError(Agri3sError):
    """Imagery is missing, unreadable or does not cover the parcels."""


class ImageryInputError(InputError, ImageryError):
    """The imagery the user pointed at is unusable as given (an empty folder, a band file
    missing): bad input (exit 2), and still an :class:`ImageryError` for callers catching those."""


class MissingDependencyError(Agri3sError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency lazily, or say which extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"'{module}' is needed here but not installed. Install it with "
            f"`pip install 'agri_3s[{extra}]'`."
        ) from exc
