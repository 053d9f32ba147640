"""Logging off the request path: a thread formats and writes every line, in batches.

A request's access line costs the event loop one tuple appended to a deque: no log
record, no formatting, no write, no wake-up of another thread. Other log records (rare)
go through a QueueHandler into a queue and wake the writer at once. Otherwise the writer
thread wakes every FLUSH_SECONDS, takes everything waiting, formats it, and writes it
with one write and one flush: per request, no system call and no thread switch. stop()
(at exit, after SIGTERM's drain) writes every line still waiting before it returns, so
no line is lost on a clean shutdown.
"""

from __future__ import annotations

import collections
import datetime
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, TextIO

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "tfstate_server.access"
# An access line's fields, in order (see accesslog.py); the JSON keys.
ACCESS_FIELDS = ("remote", "method", "path", "status", "user", "state", "lock", "version", "ms")
ACCESS_TEXT = "%s %s %s %d user=%s state=%s lock=%s version=%s %.1fms"
FLUSH_SECONDS = 0.05
MAX_WAITING = 200_000  # lines; beyond this (the output is stuck) lines are counted, not kept


class _Clock:
    """asctime as logging.Formatter writes it, with the part before the milliseconds
    computed once per second rather than once per line."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._text},{int((created - second) * 1000):03d}"


def _iso(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return orjson.dumps(data, default=str).decode()


class LogWriter:
    def __init__(self, fmt: str, stream: TextIO) -> None:
        self.json = fmt == "json"
        self.formatter: logging.Formatter = JSONFormatter() if self.json else logging.Formatter(TEXT_FORMAT)
        self.stream = stream
        self.records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.access: collections.deque[tuple[Any, ...]] = collections.deque()
        self.access_enabled = True
        self.dropped = 0
        self.handler: logging.Handler | None = None
        self._clock = _Clock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tfstate-log", daemon=True)
        self._thread.start()

    def access_line(self, fields: tuple[Any, ...]) -> None:
        """On the event loop: one tuple of ACCESS_FIELDS (deque.append is thread-safe)."""
        if len(self.access) >= MAX_WAITING:
            self.dropped += 1
            return
        self.access.append((time.time(), fields))

    def _format_access(self, created: float, fields: tuple[Any, ...]) -> str:
        if self.json:
            data = {"time": _iso(created), "level": "info", "logger": ACCESS_LOGGER}
            data["message"] = ACCESS_TEXT % fields
            data.update(zip(ACCESS_FIELDS, fields, strict=True))
            data["ms"] = round(fields[-1], 1)
            return orjson.dumps(data, default=str).decode()
        return f"{self._clock.text(created)} INFO {ACCESS_LOGGER}: {ACCESS_TEXT % fields}"

    def _drain(self) -> None:
        lines: list[tuple[float, str]] = []
        while True:
            try:
                created, fields = self.access.popleft()
            except IndexError:
                break
            lines.append((created, self._format_access(created, fields)))
        while True:
            try:
                record = self.records.get_nowait()
            except queue.Empty:
                break
            try:
                lines.append((record.created, self.formatter.format(record)))
            except Exception as exc:  # a broken record must not stop the log
                lines.append((record.created, f"(a log record of {record.name} failed to format: {exc!r})"))
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            lines.append((time.time(), f"(log output was stuck: {dropped} lines were left out)"))
        if not lines:
            return
        lines.sort(key=lambda line: line[0])  # stable: each source keeps its order
        try:
            self.stream.write("\n".join(text for _, text in lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone: nothing to tell it to

    def wake(self) -> None:
        """Write now rather than at the next tick (rare lines: warnings, errors, starts)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self._drain()
        self._drain()

    def stop(self, timeout: float = 30.0) -> None:
        """Write every line waiting so far, then end the thread."""
        global WRITER
        if WRITER is self:
            WRITER = None
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler = None
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)


class _QueueHandler(logging.handlers.QueueHandler):
    """Records formatted into their message here, as QueueHandler does (their arguments
    may change after the call); the writer adds time, level and name."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__(writer.records)
        self.writer = writer

    def prepare(self, record: logging.LogRecord) -> Any:
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.writer.records.qsize() >= MAX_WAITING:
            self.writer.dropped += 1
            return
        self.writer.records.put_nowait(record)
        self.writer.wake()


WRITER: LogWriter | None = None  # the process's writer, once configured


def configure(level: str, fmt: str, stream: TextIO | None = None) -> LogWriter:
    """Every logger of the process through one writer; returns it (stop() at exit)."""
    global WRITER
    writer = LogWriter(fmt, stream or sys.stderr)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    writer.handler = _QueueHandler(writer)
    root.addHandler(writer.handler)
    root.setLevel(level.upper())
    logging.getLogger("botocore").setLevel(logging.WARNING)
    writer.access_enabled = logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
    WRITER = writer
    return writer
