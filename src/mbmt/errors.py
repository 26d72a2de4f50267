"""User-facing errors: the CLI prints these as one line, without a traceback."""


class MbmtError(Exception):
    """An error the user can fix; the message names the file, key or value and the fix."""


class ParamsError(MbmtError):
    """params.yaml (or a preset) is invalid."""


class DataError(MbmtError):
    """A dataset file, archive or sample is missing or invalid."""
