"""The exception types users see: a data or runtime problem (exit 1) and a badly chosen
option (exit 2)."""


class NaccError(Exception):
    """Bad input, a damaged archive, or a missing model. The message says what is wrong;
    the CLI prefixes it with the file name."""


class OptionError(NaccError, ValueError):
    """An option or parameter the caller chose that nacc cannot use (an unknown codec or
    predictor name, say): a usage error, which the command line reports once, exit 2.
    ``option`` names the option (``--against``), or is empty.  It is also a NaccError, so
    that a name read from an archive (an unknown predictor there) is a data error like any
    other damage."""

    def __init__(self, message: str, option: str = ""):
        super().__init__(message)
        self.option = option
