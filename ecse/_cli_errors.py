"""The command line's error handling: one handler for every command, and checks that
fail early (an output folder that cannot be written).

A user error (missing or unreadable file, bad YAML, unknown option, unknown element, bad
index, missing target key, NaN in the data, an output folder that cannot be written)
becomes one line ``ecse: error: ...`` on stderr and exit status 2; any other exception
one line ``ecse: internal error: ...`` and status 1; ``debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

__all__ = ["USER_ERRORS", "check_writable", "run_command"]

#: exceptions that come from bad user input (files, YAML, options, data) and exit with status 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, IndexError, TypeError, OSError)


def _user_errors() -> tuple[type[BaseException], ...]:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is an atomistic dependency
        return USER_ERRORS
    return USER_ERRORS + (yaml.YAMLError,)


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a ``KeyError``'s message without its quotes)."""
    message = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err
    text = " ".join(str(message).split())
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in text:
        text = f"{text}: {err.filename!r}"
    return text or type(err).__name__


def check_writable(folder: str, what: str = "output folder") -> None:
    """Raise ``OSError`` now, rather than after training, when ``folder`` cannot be created
    or written (a file in the way, a read-only parent)."""
    path = os.path.abspath(folder)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise NotADirectoryError(f"{what} {folder!r} cannot be created: {probe!r} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder!r} is not writable (no write permission in {probe!r})")


def _error(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, debug: bool = False) -> int:
    """Run one command under the common error handler (see the module docstring)."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        _error("ecse: interrupted")
        return 130
    except _user_errors() as err:
        if debug:
            traceback.print_exc()
        _error(f"ecse: error: {_one_line(err)}")
        return 2
    except Exception as err:  # a bug, not the user's input: one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        _error(f"ecse: internal error: {type(err).__name__}: {_one_line(err)}"
               + ("" if debug else " (run with --debug for the traceback)"))
        return 1
