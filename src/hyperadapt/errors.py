"""The errors hyperadapt raises for a user's mistake, apart from its own bugs.

A bad option, config value, data file, run folder or output path raises a :class:`UserError` (a
``ValueError``) whose message says what is wrong and how to fix it; the command line prints it as one
``error: ...`` line (exit code 2). Any other exception reaching the command line is a bug in hyperadapt:
it says so in one line, and ``HYPERADAPT_DEBUG=1`` shows its traceback. Python callers catch ``ValueError``
as before (every ``UserError`` is one).
"""

from __future__ import annotations


class UserError(ValueError):
    """A user's mistake: bad input, named with the fix (``--limit must be at least 1, got 0``)."""


class InputNotFound(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""
