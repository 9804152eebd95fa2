"""User-facing errors.

Anything a user can get wrong (an unknown dataset name, an ε outside [0, 1], a checkpoint of
another architecture, a missing data folder) raises :class:`FeatgapError` with a message that
fits on one line and says what to do. The CLI turns it into ``featgap: error: ...`` on stderr
and exit code 2, without a traceback. Library users catch it like any other exception.
"""

from __future__ import annotations


class FeatgapError(Exception):
    """A problem with the user's input, explained in one line."""
