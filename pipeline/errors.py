"""The one error type users see, and how the CLI prints it."""
from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix: the message names the problem and the fix, on one line.

    The CLI prints it as ``error: <message>`` with no traceback (unless ``--debug``).
    """
