"""The one error type users can cause, and the exit codes the CLI maps it to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a check, a verdict or a wait that did not succeed
EXIT_USAGE = 2  # bad input, bad config, missing tool: something the user can fix


class FacError(Exception):
    """An expected failure: `message` says what is wrong, `hint` how to fix it."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple[type[FacError], tuple[str, str | None, int]]:
        # A remote executor's task sends its error back pickled: as a plain FacError, message and
        # hint intact, whatever the subclass's own constructor takes.
        return (FacError, (self.message, self.hint, self.exit_code))
