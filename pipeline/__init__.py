"""soundspace: turn 2 or 4 sounds into a browsable sound space with the NSynth autoencoder."""


class SoundspaceError(Exception):
    """A problem the user can fix; the message names it and says how.

    The CLI prints it without a traceback and exits non-zero.
    """
