"""Diagnostics: findings that point at a file, a line, a column and a field.

Every stage reports problems with user input as :class:`Diagnostic` values rather
than exceptions, so that one run can report every problem at once. Errors that stop
a command (usage, configuration, engine failures) are :class:`ModelopsError`, which
carries the exit code from the conventions in ``shared/DESIGN.md``:
0 clean, 1 findings, 2 usage or configuration error, 3 apply failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_APPLY_FAILED = 3


@dataclass(frozen=True, order=True)
class Position:
    """A place in a source file.

    Attributes:
        file: path as shown to the user (relative to the repository root when possible).
        line: 1-based line number; 0 when unknown.
        col: 1-based column number; 0 when unknown.
    """

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    """One finding about user input.

    Attributes:
        position: where the finding is (file, line, column).
        field: dotted path of the field concerned (``spec.target.namespace``), or ``""``
            when the finding is about the whole file.
        message: what is wrong and what would be valid.
        severity: ``error`` (blocks) or ``warning`` (reported, does not block).
        code: a stable identifier of the check (``schema``, ``yaml``, ``duplicate-name``,
            ``model-digest``...), used by machine formats.
    """

    position: Position
    field: str
    message: str
    severity: str = "error"
    code: str = "spec"

    def __str__(self) -> str:
        """``file:line:col: field: message``; a warning as ``file:line:col: warning: field:
        message`` (the compiler convention)."""
        where = str(self.position)
        if self.severity == "warning":
            where += ": warning"
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        """Return a JSON-ready mapping: file, line, col, field, message, severity, code."""
        return {
            "file": self.position.file,
            "line": self.position.line,
            "col": self.position.col,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
            "code": self.code,
        }


class ModelopsError(Exception):
    """An error that stops a command, with the exit code it maps to.

    Args:
        message: one or more lines for the user; no traceback is shown.
        exit_code: 2 for usage/configuration errors (default), 3 for apply failures.
        diagnostics: optional findings that explain the error.
    """

    def __init__(
        self,
        message: str,
        exit_code: int = EXIT_USAGE,
        diagnostics: list[Diagnostic] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.diagnostics = list(diagnostics or [])


@dataclass
class DiagnosticList:
    """An ordered collection of diagnostics with helpers for exit codes."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diagnostic: Diagnostic) -> None:
        """Append one diagnostic."""
        self.items.append(diagnostic)

    def extend(self, diagnostics) -> None:
        """Append several diagnostics (any iterable of :class:`Diagnostic`)."""
        self.items.extend(diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics with severity ``error``."""
        return [d for d in self.items if d.severity == "error"]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
