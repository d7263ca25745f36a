"""One error type for everything a user can get wrong (bad path, bad file, bad option).

The CLI prints a `BaichuanError` as one line and exits non-zero; any other exception is a bug
and keeps its traceback.
"""


class BaichuanError(Exception):
    """A user-facing error: the message names the file, line or field that is wrong."""


def bounded(kind=int, lo=None, hi=None):
    """An argparse `type` that parses `kind` and keeps it within [lo, hi], so a nonsensical option
    value is refused with one line naming the option rather than doing something odd."""
    def parse(text: str):
        import argparse
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if lo is not None and hi is not None else \
                (f"at least {lo}" if lo is not None else f"at most {hi}")
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value
    return parse


def json_objects(lines, path):
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is not a
    JSON object is a `BaichuanError` naming the file and line."""
    import json
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BaichuanError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(record, dict):
            raise BaichuanError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
        yield n, record
