"""Exit codes and one-line error reports shared by every command of the project.

Every command (``rl/train_agent.py``, ``experiments/*.py``, ``python -m attiqa ...``) reports a
bad input as one line ``error: <file>: <cause>`` on stderr, goes on with the other inputs, and
exits with the code of the first failure's kind:

| code | kind |
|---|---|
| 0 | every input done |
| 1 | internal error (a bug: Python's traceback) |
| 2 | usage: bad flags, option values or overrides |
| 3 | a path does not exist |
| 4 | permission denied |
| 5 | unreadable or invalid input: empty, truncated, corrupt, wrong format, a folder where a file is expected, invalid values, an image too small |
| 6 | refused unsafe content: pickled objects (code) in a checkpoint or agent, a Python tag in YAML; nothing of it ran |
| 130 | interrupted (Ctrl-C) |

It lives in the leaf package ``rlisp_common``, below ``isp`` and ``attiqa`` (which never import
each other), so that one table serves every command.
"""
from __future__ import annotations

import sys
from pathlib import Path

__all__ = [
    "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_MISSING", "EXIT_OK", "EXIT_PERMISSION", "EXIT_UNSAFE",
    "EXIT_USAGE", "Failures", "InputError", "describe", "error_line", "report_error",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_MISSING = 3
EXIT_PERMISSION = 4
EXIT_BAD_INPUT = 5
EXIT_UNSAFE = 6
EXIT_INTERRUPTED = 130


class InputError(ValueError):
    """A bad input with its exit code and, when known, its file:
    ``InputError("1x1 px, below the 32 px minimum", EXIT_BAD_INPUT, path="a.png")``.

    A ``ValueError``, so callers that catch ``ValueError`` for bad inputs keep working."""

    def __init__(self, cause: str, code: int = EXIT_BAD_INPUT, path=None) -> None:
        super().__init__(f"{path}: {cause}" if path is not None else cause)
        self.cause = cause
        self.code = int(code)
        self.path = None if path is None else str(path)

    @classmethod
    def wrap(cls, exc: BaseException, path) -> BaseException:
        """``exc`` as an :class:`InputError` of file ``path`` (``exc`` itself when it is a bug)."""
        if isinstance(exc, InputError):
            return exc if exc.path is not None else cls(exc.cause, exc.code, path)
        code, cause = describe(exc)
        return exc if code == EXIT_INTERNAL else cls(cause, code, path)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(exc: BaseException) -> set[str]:
    return {f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__} | {c.__name__ for c in type(exc).__mro__}


def describe(exc: BaseException, path=None) -> tuple[int, str]:
    """``(exit code, cause in a few words)`` of an exception raised while reading input ``path``
    (a leading ``"<path>: "`` of the message is left out: the report names the file once)."""
    code, cause = _describe(exc)
    for prefix in {str(path) if path is not None else None, getattr(exc, "path", None), getattr(exc, "filename", None)} - {None}:
        if cause.startswith(f"{prefix}: "):
            cause = cause[len(str(prefix)) + 2 :]
    return code, cause


def _describe(exc: BaseException) -> tuple[int, str]:
    if not isinstance(exc, (InputError, OSError)) and isinstance(exc.__cause__, (PermissionError, FileNotFoundError, IsADirectoryError)):
        return _describe(exc.__cause__)  # e.g. ValueError("not a readable image") from PermissionError
    names = _names(exc)
    msg = str(exc)
    if isinstance(exc, InputError):
        return exc.code, exc.cause
    if isinstance(exc, FileNotFoundError):  # a message of our own (no errno) says more, e.g. "not a dataset root"
        return EXIT_MISSING, "no such file or directory" if exc.errno is not None or not msg else _one_line(msg)
    if isinstance(exc, PermissionError):
        return EXIT_PERMISSION, "permission denied"
    if isinstance(exc, IsADirectoryError):
        return EXIT_BAD_INPUT, "is a directory, a file was expected"
    if isinstance(exc, NotADirectoryError):
        return EXIT_BAD_INPUT, "a part of the path is not a directory"
    if "UnpicklingError" in names:
        if "GLOBAL" in msg or "global" in msg:
            return EXIT_UNSAFE, "refused: it holds pickled Python objects (possibly code), not plain tensors; nothing of it was run"
        return EXIT_BAD_INPUT, "corrupt: not a tensor file (unreadable pickle data)"
    if isinstance(exc, EOFError):
        return EXIT_BAD_INPUT, "empty or truncated file"
    if "BadZipFile" in names:
        return EXIT_BAD_INPUT, f"corrupt or truncated zip archive ({_one_line(msg, 120)})"
    if isinstance(exc, RuntimeError) and ("PytorchStreamReader" in msg or "zip archive" in msg):
        return EXIT_BAD_INPUT, "corrupt or truncated checkpoint (its zip archive cannot be read)"
    if "YAMLError" in names:
        if "ConstructorError" in names and "tag" in msg:
            tag = msg.split("tag", 1)[1].split("\n")[0].strip(" '")
            return EXIT_UNSAFE, f"refused: YAML tag {tag} (only plain YAML values are read)"
        return EXIT_BAD_INPUT, f"invalid YAML: {_one_line(msg, 200)}"
    if "JSONDecodeError" in names:
        return EXIT_BAD_INPUT, f"invalid JSON: {_one_line(msg, 200)}"
    if isinstance(exc, UnicodeDecodeError):
        return EXIT_BAD_INPUT, "corrupt or not the expected format (undecodable bytes)"
    if "UnidentifiedImageError" in names:
        return EXIT_BAD_INPUT, "not an image file that can be decoded"
    if "LibRawFileUnsupportedError" in names:
        return EXIT_BAD_INPUT, "not a RAW file LibRaw can read (unsupported or corrupt)"
    if any(n.startswith("LibRaw") for n in names):
        return EXIT_BAD_INPUT, f"RAW decoding failed: truncated or corrupt ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return EXIT_BAD_INPUT, _one_line(exc.strerror or msg or type(exc).__name__)
    if isinstance(exc, (ValueError, KeyError, TypeError, RuntimeError)):
        return EXIT_BAD_INPUT, _one_line(msg.strip("'\"") or type(exc).__name__)
    return EXIT_INTERNAL, f"{type(exc).__name__}: {_one_line(msg)}"


def error_line(path, exc: BaseException, prefix: str = "error") -> str:
    """``error: <path>: <cause>`` (``path`` defaults to the exception's own file; left out when unknown)."""
    path = path if path is not None else getattr(exc, "path", None) or getattr(exc, "filename", None)
    _, cause = describe(exc, path)
    return f"{prefix}: {path}: {cause}" if path is not None else f"{prefix}: {cause}"


def report_error(exc: BaseException, path=None, prefix: str = "error") -> int:
    """Prints :func:`error_line` for a bad input on stderr and returns its exit code; a bug
    (:func:`describe` says :data:`EXIT_INTERNAL`) is re-raised, so that its traceback is kept.

    What every command's ``main`` does with an exception that ends it (``except Exception as exc:
    return report_error(exc)``)."""
    code = describe(exc)[0]
    if code == EXIT_INTERNAL:
        raise exc
    print(error_line(path, exc, prefix=prefix), file=sys.stderr, flush=True)
    return code


class Failures:
    """Collects bad inputs of one command: prints each as one line and keeps the exit code.

    Example:
        >>> failures = Failures()                              # doctest: +SKIP
        >>> try: read(path)                                    # doctest: +SKIP
        ... except Exception as exc: failures.add(path, exc)   # doctest: +SKIP
        >>> return failures.code                               # doctest: +SKIP
    """

    def __init__(self, prefix: str = "error", stream=None) -> None:
        self.prefix = prefix
        self.stream = stream
        self.items: list[tuple[str, int, str]] = []

    def add(self, path, exc: BaseException | None = None, *, cause: str | None = None, code: int | None = None) -> int:
        """Reports one failed input (an exception, or ``cause`` and ``code``); returns its code."""
        if path is None and exc is not None:
            path = getattr(exc, "path", None) or getattr(exc, "filename", None)
        c, text = describe(exc, path) if exc is not None else (EXIT_BAD_INPUT, "")
        code = c if code is None else int(code)
        text = cause if cause is not None else text
        where = f"{Path(path)}: " if path is not None else ""
        print(f"{self.prefix}: {where}{text}", file=self.stream or sys.stderr, flush=True)
        self.items.append((str(path), code, text))
        return code

    def __len__(self) -> int:
        return len(self.items)

    @property
    def code(self) -> int:
        """The first failure's code, 0 when none."""
        return self.items[0][1] if self.items else EXIT_OK
