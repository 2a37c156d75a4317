"""The errors this reader raises."""

from __future__ import annotations

import os


class PurePixmoError(Exception):
    """Base class of the errors this reader raises."""


class CorruptDataError(PurePixmoError):
    """The data breaks a rule of FORMAT.md. Carries `file`, `row_group` and `column`."""

    def __init__(
        self,
        what: str,
        file: str | os.PathLike[str] | None = None,
        row_group: int | None = None,
        column: str | None = None,
    ) -> None:
        self.what = what
        self.file = None if file is None else os.fspath(file)
        self.row_group = row_group
        self.column = column
        where = []
        if self.file is not None:
            where.append(self.file)
        if row_group is not None:
            where.append(f"row group {row_group}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {what}" if where else what)


class UnsupportedVersionError(PurePixmoError):
    """A major version other than 1, a header flag or a required feature this reader lacks."""
