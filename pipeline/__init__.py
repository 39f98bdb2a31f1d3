"""soundspace: turn 2 or 4 sounds into a browsable sound space with the NSynth autoencoder."""

import re
import sys


class SoundspaceError(Exception):
    """A problem the user can fix; the message names it and says how.

    The CLI prints it without a traceback and exits non-zero.
    """


# C0 and C1 control characters and DEL: from file names, a soundfont's preset names, a space.json.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (`\\x1b`, `\\n`): a message that
    quotes a name from a file must not recolour, move or clear the user's terminal, nor break the
    one line it is."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def warn(text: str) -> None:
    """One warning line on stderr: the run goes on."""
    print(f"soundspace: warning: {printable(text)}", file=sys.stderr)
