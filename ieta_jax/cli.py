"""What every command-line tool does on its way out."""
from __future__ import annotations

import os
import sys
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a process ended by Ctrl-C (128 + SIGINT)


def exit(status: int) -> NoReturn:  # noqa: A001 (sys.exit's name, for a __main__ block)
    """`sys.exit(status)`, except after Ctrl-C (`INTERRUPTED`): then at once, without the interpreter's teardown.

    An interrupt can leave a C extension mid-call or mid-import (XLA's threads, numpy under matplotlib), and
    tearing the interpreter down around it crashed it now and then after the tool had said "interrupted" (SIGSEGV,
    SIGABRT in `PyThreadState_Get`, death by a second SIGINT), so the shell saw a crash, not 130. The tools write
    their outputs atomically, so nothing is left for the teardown to do but flush the std streams."""
    if status == INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):  # closed, or a reader gone: nothing more to say
                pass
        os._exit(INTERRUPTED)
    sys.exit(status)
