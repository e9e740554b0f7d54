"""The one error a user's spec can raise."""

from __future__ import annotations

import reprlib

# How much of one piece of user text (a name, a path, a reason quoting them) an error shows:
# a 20 MB op name must not make a 40 MB error line.
MAX_SHOWN = 300


# How to get the oracles. torch comes first and by hand: left to pip, `archcalc[crosscheck]`'s
# torch requirement can pull a multi-GB CUDA build onto a machine without a GPU.
INSTALL_ORACLES = "install torch (its CPU wheel where there is no GPU), then pip install 'archcalc[crosscheck]'"


class SpecError(ValueError):
    """A malformed or impossible spec: `FILE:LINE: PATH (op): reason` in one line."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        op: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.path = path
        self.op = op
        super().__init__(str(self))

    def located(
        self, *, file: str | None = None, line: int | None = None, path: str | None = None, op: str | None = None
    ) -> SpecError:
        """A copy that fills in whatever location this error does not know yet."""
        return SpecError(
            self.reason,
            file=self.file or file,
            line=self.line or line,
            path=self.path or path,
            op=self.op or op,
        )

    def __str__(self) -> str:
        where = ""
        if self.file:
            file = visible(self.file)
            where = f"{file}:{self.line}: " if self.line else f"{file}: "
        if self.path:
            path = visible(self.path)
            where += f"{path} ({visible(self.op, 60)}): " if self.op else f"{path}: "
        return f"{where}{visible(self.reason, 3 * MAX_SHOWN)}"

    def __reduce__(self):  # keep the keyword-only fields through pickling
        return (_rebuild, (self.reason, self.file, self.line, self.path, self.op))


def _rebuild(reason, file, line, path, op) -> SpecError:
    return SpecError(reason, file=file, line=line, path=path, op=op)


class _Short(reprlib.Repr):
    """reprlib's limits, also on the list and dict subclasses the YAML reader makes (LList, LDict)."""

    def repr1(self, x, level):
        if isinstance(x, list) and type(x) is not list:
            return self.repr_list(x, level)
        if isinstance(x, dict) and type(x) is not dict:
            return self.repr_dict(x, level)
        return super().repr1(x, level)


_SHORT = _Short()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def shown(value: object) -> str:
    """A value for an error message, cut short (a YAML alias can make a list of a billion items)."""
    return _SHORT.repr(value)


def visible(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` safe to print on a terminal, on one line: control and other invisible characters
    (escape sequences, newlines, bidirectional overrides) written as Python escapes (`\\x1b`,
    `\\n`, `\\u202e`), and cut after `limit` characters."""
    text = str(text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit:,} more characters)"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
