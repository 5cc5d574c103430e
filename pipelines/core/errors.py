"""Errors shared by every reader and validator of the workbench.

One exception type for bad input, so a notebook or ``make`` can tell "the data are wrong" (fix the
file) from "the code is wrong" (a bug). The message always names where the problem is: file, row
(1-based data row as counted in the file, header excluded), subject, session and item/field.
"""

from __future__ import annotations

__all__ = ["InputError", "did_you_mean"]


class InputError(ValueError):
    """Bad input data, located as precisely as known.

    Parameters are the problem in words and the first offending location (``None`` when not
    applicable): ``file``, ``row`` (1-based data row in the file), ``subject``, ``session``,
    ``item`` (or ``field`` for non-item columns), and any further labelled context as keywords
    (e.g. ``timepoint="24h"``, ``analyte="IL6"``). ``details`` is appended on its own lines
    (e.g. further offending cells). All are kept as attributes; the message repeats them in words.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        row: int | None = None,
        subject: str | None = None,
        session: str | None = None,
        item: str | None = None,
        field: str | None = None,
        details: str | None = None,
        **context: object,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.row = row
        self.subject = subject
        self.session = session
        self.item = item
        self.field = field
        self.details = details
        self.context = context
        super().__init__(self._message())

    def _message(self) -> str:
        labelled = [
            ("file", self.file),
            ("row", self.row),
            ("subject", self.subject),
            ("session", self.session),
            *self.context.items(),
            ("item", self.item),
            ("field", self.field),
        ]
        where = [f"{label} {value}" for label, value in labelled if value is not None]
        text = self.problem
        if where:
            text += " [" + ", ".join(where) + "]"
        if self.details:
            text += "\n" + self.details
        return text


def did_you_mean(name, known) -> str:
    """``" — did you mean 'x'?"`` for the closest of ``known`` to ``name`` (difflib), or ``""``: the hint every
    message about a misspelt field, label, measure or column ends with."""
    import difflib

    hint = difflib.get_close_matches(str(name), [str(k) for k in known], 1)
    return f" — did you mean {hint[0]!r}?" if hint else ""
