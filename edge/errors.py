class InputError(Exception):
    """Bad input from the user: the message names the problem and the fix; CLIs exit 2."""


class SliceTooLarge(InputError):
    """A slice has more patches than the bundle's graphs (and engines) were sized for."""
