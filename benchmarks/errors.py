"""The one exception type for mistakes in what the user asked for.

The CLI prints a `UserError` as ``error: <message>`` and exits 1; anything else that is
not about the user's own files or flags (``TypeError``, ``RuntimeError``, ...) is a bug and keeps
its traceback.  It subclasses ``ValueError`` so that library callers that already catch
``ValueError`` for bad arguments keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad flag value, input file or output folder, with a message that names it."""
