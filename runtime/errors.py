"""One error path for every ``dannet-*`` command: exit codes, one-line messages, ``--debug``.

A problem the user can fix is reported as one line on stderr, ``dannet-<command>: error: <what>``,
naming the file or flag and what was expected, and the exit code says which kind of problem it was
(README, "Errors and exit codes"). An unexpected error is a bug: one line saying so, and its
traceback only with ``--debug`` or ``DANNET_DEBUG=1``, because a traceback tells a user nothing they
can act on. Pure Python, so the runtime imports it without torch and every package shares it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from typing import Any, Callable, NoReturn, Sequence

EXIT_OK = 0
#: the work started and could not finish: a live stream lost for good, a NaN loss
EXIT_FAILED = 1
#: a bad flag, URI, config value, model or checkpoint (argparse's own code for usage errors)
EXIT_USAGE = 2
#: a dataset file that cannot be used: undecodable, or a label of another size than its image
EXIT_DATA = 3
#: a file that cannot be written or read: read-only file system, full disk, a folder in the way
EXIT_IO = 4
#: a bug (sysexits' EX_SOFTWARE); rerun with --debug for the traceback
EXIT_INTERNAL = 70
#: stopped by SIGINT (130) / SIGTERM (143): 128 + the signal number, as shells report a signal
EXIT_SIGINT = 128 + signal.SIGINT

DEBUG_ENV = "DANNET_DEBUG"


class DannetError(Exception):
    """A problem the user can act on: the message is one line naming the file or flag and what was
    expected; ``exit_code`` says which kind of problem it is (the class's, or one given per error)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DataError(DannetError):
    """A dataset file that cannot be used (exit 3)."""

    exit_code = EXIT_DATA


class OutputError(DannetError):
    """An output that cannot be written: a folder in its place, a read-only file system, a full disk (exit 4)."""

    exit_code = EXIT_IO


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; like KeyboardInterrupt, not an ``Exception``, so no ``except Exception``
    swallows it on its way to the command's exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_signals() -> None:
    """The exit status is decided: later SIGINT/SIGTERM change nothing. (SIG_IGN, not a Python handler: at
    shutdown Python puts back the default action of every signal with a Python handler, and a signal then
    would end the process with its raw status.)"""
    for sig in EXIT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def raise_interrupted(signum: int, _frame: Any) -> NoReturn:
    """The first signal interrupts the command; any further one would interrupt its cleanup, so it is ignored."""
    ignore_signals()
    raise Interrupted(signum)


def _default_signals() -> None:
    """Python's own SIGINT/SIGTERM behaviour, for forked children (DataLoader workers): they get the terminal's
    Ctrl-C too, and torch's worker loop expects a KeyboardInterrupt, not our ``Interrupted``."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_children_reset = False


def exit_on_signals() -> None:
    """From now on SIGINT and SIGTERM end the command with 130 / 143 and one line, not with a traceback
    (SIGINT's KeyboardInterrupt) or the raw signal status (SIGTERM's default action). Forked children go back
    to Python's defaults (``_default_signals``)."""
    global _children_reset
    if not _children_reset:
        os.register_at_fork(after_in_child=_default_signals)
        _children_reset = True
    for sig in EXIT_SIGNALS:
        signal.signal(sig, raise_interrupted)


def command_line(argv: Sequence[str] | None) -> list[str]:
    """The arguments of a command's ``main``. ``None`` means it runs as the program (console script or
    ``python -m``), which then owns the process's signals (``exit_on_signals``, and ``run_command`` with
    ``program``); a list means it was called from Python (tests, scripts), whose handlers stay as they are."""
    if argv is None:
        exit_on_signals()
        return sys.argv[1:]
    return list(argv)


def one_line(text: str) -> str:
    """A message as one line: libraries' multi-line errors joined with '; '."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) or "unknown error"


def describe_os_error(error: OSError) -> str:
    """``path: No space left on device`` (the file and the system's reason), as a user wants to read it."""
    reason = error.strerror or one_line(str(error))
    if error.filename is None:
        return reason
    target = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{error.filename}{target}: {reason}"


def debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, DannetError):
        return error.exit_code
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(error, OSError):
        return EXIT_IO
    return EXIT_INTERNAL


def message_of(error: BaseException) -> str:
    if isinstance(error, DannetError):
        return one_line(str(error))
    if isinstance(error, Interrupted):
        return f"interrupted by {error}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by SIGINT"
    if isinstance(error, OSError):
        return describe_os_error(error)
    return (f"internal error: {type(error).__name__}: {one_line(str(error))} (a bug: rerun with --debug "
            "for the traceback, and report it)")


def run_command(prog: str, body: Callable[[], int | None], debug: bool = False, program: bool = False) -> int:
    """Run a command's body and turn whatever escapes it into one line on stderr and its exit code. As the
    program (``program``), signals are ignored once the exit code is decided, up to the process's end."""
    try:
        try:
            code = body() or EXIT_OK
        except (Exception, KeyboardInterrupt, Interrupted) as error:
            if debug:
                traceback.print_exc()
            print(f"{prog}: error: {message_of(error)}", file=sys.stderr, flush=True)
            code = exit_code_of(error)
        if program:
            ignore_signals()
    except (KeyboardInterrupt, Interrupted) as late:  # the first signal came while the outcome was being reported
        code = exit_code_of(late)
    return code


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error every command uses (argparse prints the usage block first), and
    ``--debug`` before a subcommand as well as after it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs: Any) -> argparse._SubParsersAction:
        """Subcommands, and ``--debug`` on this parser too: a user types ``dannet-export --debug onnx ...`` as
        readily as ``dannet-export onnx ... --debug``, and every command promises the flag. Only its presence
        matters (``debug_requested`` reads the command line), so the subcommand's own default may overwrite it
        in the namespace."""
        add_debug_flag(self)
        return super().add_subparsers(**kwargs)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on ``parser``, once: a parser with subcommands gets it from ``Parser.add_subparsers``, and a
    command that also adds it itself must not fail with argparse's conflicting-option error."""
    if "--debug" not in parser._option_string_actions:
        parser.add_argument("--debug", action="store_true",
                            help=f"print the traceback of an unexpected error (also {DEBUG_ENV}=1)")


def without_leading_debug(argv: Sequence[str]) -> list[str]:
    """The command line less the ``--debug`` flags before its first other argument, for a command that picks its
    subcommand from the first argument itself (``dannet-bench --debug latency ...``)."""
    start = next((i for i, arg in enumerate(argv) if arg != "--debug"), len(argv))
    return list(argv[start:])
