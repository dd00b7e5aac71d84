"""The one exception type users see: a data or runtime problem, reported as exit 1."""


class NaccError(Exception):
    """Bad input, a damaged archive, or a missing model. The message says what is wrong;
    the CLI prefixes it with the file name."""
