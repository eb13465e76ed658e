"""User-facing errors.

Library code raises :class:`MaskgitError` for anything a user can fix (a bad file, a wrong option value).
The CLI prints it as one line ``Error: ...`` and exits 1; ``MASKGIT_DEBUG=1`` shows the traceback.
"""


class MaskgitError(Exception):
    """An expected, user-fixable error. The message is a complete sentence naming the file or option."""
