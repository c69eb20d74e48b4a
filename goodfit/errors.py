"""The one error type goodfit raises for bad input."""


class GoodfitError(Exception):
    """Bad input or an unrecoverable fault, with a message that says how to fix it.

    Stage scripts catch it, print the message (no traceback) and exit non-zero.
    """
