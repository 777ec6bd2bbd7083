class InputError(Exception):
    """Bad input from the user: the message names the problem and the fix; CLIs exit 2."""
