"""Logging off the request path: records go into a queue; one thread formats and writes them.

The event loop only builds a record and puts it into the queue (no formatting, no
write, no flush). The writer thread takes every record waiting, formats them, and writes
them with one write and one flush. stop() (at exit, after SIGTERM's drain) writes every
record still queued before it returns, so no line is lost on a clean shutdown.
"""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import queue
import sys
import threading
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "tfstate_server.access"
# The access line's arguments, in order (see accesslog.py), as JSON keys.
ACCESS_FIELDS = ("remote", "method", "path", "status", "user", "state", "lock", "version", "ms")
MAX_QUEUED = 100_000  # beyond this (the output is stuck), records are counted, not kept
BATCH = 1024
_STOP = object()


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message; an access line's fields too."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple):
            data.update(zip(ACCESS_FIELDS, record.args, strict=False))
            data["ms"] = round(float(data["ms"]), 1)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class _QueueHandler(logging.handlers.QueueHandler):
    """Access records go into the queue as they are (their arguments are strings and
    numbers): formatting them is the writer's job. Others are formatted here, as
    QueueHandler does, since their arguments may change after the call."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(writer.queue)  # type: ignore[arg-type]
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> Any:
        if record.name == ACCESS_LOGGER:
            return record
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.writer.queue.qsize() >= MAX_QUEUED:
            self.writer.dropped += 1
            return
        self.writer.queue.put_nowait(record)


class LogWriter:
    def __init__(self, formatter: logging.Formatter, stream: TextIO) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.formatter = formatter
        self.stream = stream
        self.dropped = 0
        self.handler: logging.Handler | None = None
        self._thread = threading.Thread(target=self._run, name="tfstate-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            lines = []
            stop = False
            for record in batch:
                if record is _STOP:
                    stop = True
                    continue
                try:
                    lines.append(self.formatter.format(record))
                except Exception as exc:  # a broken record must not stop the log
                    lines.append(f"(log record {record.name} could not be formatted: {exc!r})")
            if self.dropped:
                dropped, self.dropped = self.dropped, 0
                lines.append(f"(log output was stuck: {dropped} lines were left out)")
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # stderr gone: nothing to tell it to
            if stop:
                return

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued so far, then end the thread."""
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler = None
        if self._thread.is_alive():
            self.queue.put(_STOP)
            self._thread.join(timeout)


def configure(level: str, fmt: str, stream: TextIO | None = None) -> LogWriter:
    """Every logger of the process through the writer; returns it (stop() at exit)."""
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    writer = LogWriter(formatter, stream or sys.stderr)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    writer.handler = _QueueHandler(writer)
    root.addHandler(writer.handler)
    root.setLevel(level.upper())
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # Process and thread names are in no line: the record need not look them up.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    return writer
