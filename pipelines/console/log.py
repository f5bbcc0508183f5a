"""The console of ``gradum score`` / ``gradum demo``: one progress bar, a short summary, errors in
one line; everything else (Beam's, absl's, transformers' logging, the worker subprocesses'
stderr and stdout, model-loading bars) goes to a log file, and to the console too with ``-v``.

While a job runs, :class:`JobConsole` points file descriptors 1 and 2 at a pipe read by a
thread that writes the log: the DirectRunner's worker subprocesses inherit those descriptors,
so their output is captured too, and so is C-level output (gRPC / absl). The console itself is
a duplicate of the original stderr. Python logging (the workers' records arrive through Beam's
logging service) goes to the same file. Every line is redacted first: the values of options
whose name holds ``secret``, ``key``, ``token``, ``password`` or ``credential`` never reach the
log or the console.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import TextIO

from pipelines.io import storage as fs

LOG_NAME = "gradum.log"
SECRET_WORDS = ("secret", "key", "token", "password", "passwd", "credential")
_SECRET_NAME = r"[\w.-]*(?:" + "|".join(SECRET_WORDS) + r")[\w.-]*"
# --name=value, --name value
_FLAG = re.compile(r"(--" + _SECRET_NAME + r")(=|\s+)([^\s'\",\]]+)", re.IGNORECASE)
# 'name': 'value', "name": "value", name=value (Beam's option dumps, repr of dicts)
_PAIR = re.compile(
    r"""(\\?['"]?\b""" + _SECRET_NAME + r"""\\?['"]?\s*[:=]\s*)(\\?['"])(.*?)(\2)""",
    re.IGNORECASE,
)
MASK = "***"
# Loggers too chatty for the log file even at INFO.
_QUIET = ("apache_beam.typehints", "urllib3", "filelock")


def secret_values(args: Iterable[str]) -> list[str]:
    """The values of ``--*secret*`` / ``--*key*`` / ``--*token*`` / ``--*password*`` options in
    ``args`` (``--name=value`` or ``--name value``)."""
    args = list(args)
    out = []
    for i, a in enumerate(args):
        if not a.startswith("-"):
            continue
        name, eq, value = a.lstrip("-").partition("=")
        if not any(w in name.lower() for w in SECRET_WORDS):
            continue
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
        if value:
            out.append(value)
    return out


class Redactor:
    """Masks known secret values and anything that looks like a secret option's value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        text = _FLAG.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
        return _PAIR.sub(lambda m: m.group(1) + m.group(2) + MASK + m.group(4), text)


class _RedactFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logged as is
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info))
        record.msg, record.args = self.redact(message), None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def default_log_path(output: str | None) -> tuple[str, bool]:
    """``(path, is_temporary)``: ``OUT/gradum.log`` for a local output directory (new or
    existing: the log is moved there only once the job's checks passed, see
    :meth:`JobConsole.claim_log`); else a new file in the local temporary directory (a bucket
    output, or a path that is a file)."""
    if output and not fs.is_remote(output):
        if not os.path.exists(output) or os.path.isdir(output):
            return os.path.join(output, LOG_NAME), False
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(tempfile.gettempdir(), f"gradum-{stamp}-{os.getpid()}.log"), True


def _is_real_fd(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False


def one_line_error(exc: BaseException) -> str:
    """A single line for an unexpected failure: the last ``SomethingError: ...`` line of the
    (possibly remote, multi-line) message, else its first line; at most 300 characters."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b", ln)]
    line = errors[-1] if errors else (lines[0] if lines else "")
    line = line.split(" [while running")[0]
    if not errors:
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line[:300]


class JobConsole:
    """The console and log of one job (a context manager; see the module docstring).

    ``stream`` is where the bar, the summary and the job's own messages go. With ``verbose``
    nothing is redirected: the libraries' output reaches the terminal as before and the log
    file still gets Python logging.
    """

    def __init__(
        self,
        log_path: str,
        *,
        verbose: bool = False,
        secrets: Iterable[str] = (),
        command: str = "gradum",
        argv: list[str] | None = None,
        temporary_log: bool = False,
        defer: bool = False,
    ) -> None:
        self.log_path = log_path  # where the log is now (a pending file until claimed)
        self.target_log_path = log_path
        self.defer = defer  # write to a pending file until claim_log(): a refused job writes
        self._claimed = not defer  # nothing under its output
        self.verbose = verbose
        self.redact = Redactor(secrets)
        self.command = command
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.temporary_log = temporary_log
        self.stream: TextIO = sys.stderr
        self._log: TextIO | None = None
        self._saved_fds: list[int] = []
        self._reader: threading.Thread | None = None
        self._handler: logging.Handler | None = None
        self._console_handler: logging.Handler | None = None
        self._root_state: tuple[list[logging.Handler], int] | None = None
        self._quiet_levels: dict[str, int] = {}
        self._own_stream: TextIO | None = None

    @classmethod
    def for_job(
        cls,
        output: str | None,
        *,
        log_file: str | None = None,
        verbose: bool = False,
        beam_args: Iterable[str] = (),
        command: str = "gradum",
    ) -> JobConsole:
        argv = sys.argv[1:]
        secrets = secret_values([*beam_args, *argv])
        if log_file:
            return cls(log_file, verbose=verbose, secrets=secrets, command=command)
        path, temporary = default_log_path(output)
        return cls(
            path,
            verbose=verbose,
            secrets=secrets,
            command=command,
            temporary_log=temporary,
            defer=not temporary,
        )

    # -- what the job says -------------------------------------------------------------
    def say(self, message: str) -> None:
        """A line on the console (and in the log), redacted."""
        message = self.redact(message)
        print(message, file=self.stream, flush=True)
        if self._handler is not None and not self.verbose:
            logging.getLogger("gradum").info(message)

    def log(self, message: str) -> None:
        """A line in the log only."""
        logging.getLogger("gradum").info(self.redact(message))

    @contextlib.contextmanager
    def to_console(self) -> Iterator[None]:
        """Python-level stderr writes (e.g. a tqdm bar of the launcher) go to the console."""
        with contextlib.redirect_stderr(self.stream):
            yield

    # -- set-up and tear-down ----------------------------------------------------------
    def claim_log(self) -> None:
        """The job's checks passed: move the pending log to its place (appended to: the log
        of an earlier run there is kept) and write there from now on."""
        if self._claimed or self._log is None or self._handler is None:
            return
        self._claimed = True
        pending = self.log_path
        os.makedirs(os.path.dirname(os.path.abspath(self.target_log_path)), exist_ok=True)
        final = open(self.target_log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._log.flush()
        with open(pending, encoding="utf-8", errors="replace") as fh:
            final.write(fh.read())
        final.flush()
        old, self._log = self._log, final
        self._handler.setStream(final)
        self.log_path = self.target_log_path
        old.close()
        with contextlib.suppress(OSError):
            os.remove(pending)

    def discard_log(self) -> bool:
        """A job refused before it started: its pending log holds nothing worth keeping.
        Returns whether there was a pending log (False: the log is where the user said)."""
        if not self._claimed and self.log_path != self.target_log_path:
            with contextlib.suppress(OSError):
                os.remove(self.log_path)
            return True
        return False

    def __enter__(self) -> JobConsole:
        if self.defer:
            fd, self.log_path = tempfile.mkstemp(prefix="gradum-", suffix=".log")
            os.close(fd)
        directory = os.path.dirname(os.path.abspath(self.log_path))
        os.makedirs(directory, exist_ok=True)
        # Appended to: a refused run must not wipe the log of the dataset already there.
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._setup_logging()
        self.log(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} " + " ".join(["gradum", *self.argv]))
        if not self.verbose:
            self._redirect_fds()
        return self

    def _setup_logging(self) -> None:
        root = logging.getLogger()
        self._root_state = (list(root.handlers), root.level)
        handler = logging.StreamHandler(self._log)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        handler.addFilter(_RedactFilter(self.redact))
        self._handler = handler
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(handler)
        if self.verbose:
            console = logging.StreamHandler(sys.stderr)
            console.addFilter(_RedactFilter(self.redact))
            self._console_handler = console
            root.addHandler(console)
        root.setLevel(logging.INFO)
        for name in _QUIET:
            lg = logging.getLogger(name)
            self._quiet_levels[name] = lg.level
            lg.setLevel(logging.WARNING)

    def _redirect_fds(self) -> None:
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        stderr_is_fd2 = _is_real_fd(sys.stderr, 2)
        self._saved_fds = [os.dup(1), os.dup(2)]
        if stderr_is_fd2:
            # The console is the terminal's stderr, kept aside before fd 2 is redirected.
            self._own_stream = io.TextIOWrapper(
                io.FileIO(os.dup(self._saved_fds[1]), "w"), line_buffering=True, errors="replace"
            )
            self.stream = self._own_stream
        else:
            self.stream = sys.stderr  # replaced by the caller (a test's capture): keep it
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = threading.Thread(
            target=self._pump, args=(read_fd,), name="gradum-log-pump", daemon=True
        )
        self._reader.start()

    def _pump(self, fd: int) -> None:
        """Copy what arrives on the redirected fds into the log, line by line, redacted."""
        logger = logging.getLogger("gradum.output")
        pending = ""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk.decode("utf-8", errors="replace")
                *lines, pending = re.split(r"[\r\n]", pending)
                for line in lines:
                    if line.strip():
                        logger.info(line)
            if pending.strip():
                logger.info(pending)
        finally:
            os.close(fd)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            logging.getLogger("gradum").error(
                "the job failed", exc_info=(exc_type, exc, tb) if tb else None
            )
        if self._saved_fds:
            for s in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    s.flush()
            os.dup2(self._saved_fds[0], 1)
            os.dup2(self._saved_fds[1], 2)
            for fd in self._saved_fds:
                os.close(fd)
            self._saved_fds = []
            if self._reader is not None:
                # EOF comes when every writer is gone; a lingering child may hold the pipe.
                self._reader.join(timeout=5)
        if self._own_stream is not None:
            with contextlib.suppress(Exception):
                self._own_stream.close()
            self._own_stream = None
        self.stream = sys.stderr
        self._teardown_logging()

    def _teardown_logging(self) -> None:
        root = logging.getLogger()
        for h in (self._handler, self._console_handler):
            if h is not None:
                root.removeHandler(h)
        if self._root_state is not None:
            handlers, level = self._root_state
            for h in handlers:
                root.addHandler(h)
            root.setLevel(level)
        for name, level in self._quiet_levels.items():
            logging.getLogger(name).setLevel(level)
        if self._handler is not None:
            self._handler.close()
        self._handler = None
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.flush()
            # Keep the file open while a lingering pump thread may still write to it.
            if self._reader is None or not self._reader.is_alive():
                self._log.close()
