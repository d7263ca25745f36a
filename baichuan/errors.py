"""One error type for everything a user can get wrong (bad path, bad file, bad option).

The CLI prints a `BaichuanError` as one line and exits non-zero; any other exception is a bug
and keeps its traceback.
"""


class BaichuanError(Exception):
    """A user-facing error: the message names the file, line or field that is wrong."""
