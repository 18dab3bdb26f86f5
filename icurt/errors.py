"""The one exception type for errors a user can cause and fix."""


class IcurtError(Exception):
    """A user-fixable problem: the message says what is wrong and how to fix it.

    The CLI prints it as one line and exits with code 2, without a traceback.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
