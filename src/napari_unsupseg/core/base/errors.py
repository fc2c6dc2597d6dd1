"""The one error type that carries a plain-words message for the user."""


class InputError(ValueError):
    """Bad input or settings: the message is a plain sentence meant for the user.

    The command line prints it and exits with code 2; the widgets show it as a
    notification. Anything else that escapes an engine is a bug.
    """
