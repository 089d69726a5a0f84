"""The one place where the command line turns an exception into what the user sees.

A user's mistake (:class:`hyperadapt.errors.UserError`, a file the system cannot read or write, a run another
process holds, a bad option, an optional package to install) ends as one ``error: ...`` line and exit code 2.
Anything else is a bug in hyperadapt: one line says so and how to see its traceback, exit code 1; with
``HYPERADAPT_DEBUG=1`` the traceback is shown. Ctrl-C in a command that saves as it goes ends with the line
that says how to resume (:func:`interrupted`), exit code 130.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from hyperadapt.config import expand_set_args
from hyperadapt.errors import UserError
from hyperadapt.runs import RunLocked

# Markup is off: user text, answers, task names and routes are printed exactly as given.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
DEBUG_ENV = "HYPERADAPT_DEBUG"
# OSError: a file the user named cannot be read or written; RunLocked: another process is training into the run
USER_ERRORS = (UserError, OSError, RunLocked)
# typer parses with its own copy of click: take its exception types from there
click_errors = sys.modules[typer.BadParameter.__module__]


def error_line(err: BaseException) -> str:
    """One line that says what is wrong: the message of ``err`` with its lines joined."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        message = f"{err.filename}: {err.strerror}"
    elif isinstance(err, click_errors.ClickException):
        message = err.format_message()
    else:
        message = str(err) or type(err).__name__
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def debugging() -> bool:
    """Whether ``HYPERADAPT_DEBUG`` asks for tracebacks (set and not 0/false/no)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; the ``typer.Exit`` to raise."""
    err_console.print(Text.assemble(("error:", "red"), " ", message))
    return typer.Exit(code=code)


def bug(err: Exception) -> typer.Exit:
    """One line for an exception that is not the user's mistake: what it was, that it is a bug, how to see it."""
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f" at {frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else ""
    return fail(
        f"{type(err).__name__}{where}: {error_line(err)} -- this is a bug in hyperadapt; rerun with "
        f"{DEBUG_ENV}=1 to see the traceback, and please report it",
        code=1,
    )


def interrupted(where: str, resume: str) -> typer.Exit:
    """Say in one line where a run stopped by Ctrl-C stands and how to resume it; exit code 130."""
    err_console.print(f"interrupted: {where}; resume with `{resume}`")
    return typer.Exit(code=130)


class ErrorGroup(TyperGroup):
    """Runs every command and sorts what goes wrong (see the module docstring); ``--set a=1 b=2`` reads as
    ``--set a=1 --set b=2`` in every command, as in the benchmarks (``config.expand_set_args``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_set_args(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (click_errors.NoArgsIsHelpError, typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:  # whoever read our output stopped (`hyperadapt ... --help | head`): not an error
            with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor has nothing to flush
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit stays quiet
            raise typer.Exit(code=141) from None  # 128 + SIGPIPE, as a shell reports a writer its reader left
        except click_errors.UsageError as err:
            name = err.ctx.command_path if err.ctx is not None else "hyperadapt"
            raise fail(f"{error_line(err)} (see: {name} --help)") from None
        except click_errors.ClickException as err:
            raise fail(error_line(err)) from None
        except USER_ERRORS as err:
            if debugging():
                raise
            raise fail(error_line(err)) from None
        except ImportError as err:  # an optional package is missing: our messages say what to install
            if debugging():
                raise
            raise (fail(error_line(err)) if "pip install" in str(err) else bug(err)) from None
        except Exception as err:
            if debugging():
                raise
            raise bug(err) from None


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """Our own warnings (renamed keys, cut prompts) as one ``warning:`` line, without the source line."""
    return f"warning: {message}\n"


warnings.formatwarning = _one_line_warning
