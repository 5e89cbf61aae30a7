"""The one exception type for problems the user can fix (bad files, bad options).

The CLI prints its message on one line and exits with status 1; library users catch it.
"""


class RnnlmError(Exception):
    """A user-facing error: the message names the file or option and the problem."""
