"""structlog configuration, called once from each program's main() (never by the library)."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    lvl = logging.getLevelNamesMapping().get(level.upper())
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}")
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    elif fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    else:
        raise ValueError(f"unknown log format {fmt!r} (console or json)")
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_aioquic(lvl)


class _ToStructlog(logging.Handler):
    """aioquic's stdlib loggers ("quic", "http3") through structlog at debug: without a handler Python
    printed their warnings raw on stderr ("[cid] Error: 298, reason: self-signed certificate"), although
    what they report already reaches the user as our own exception or log line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger("aioquic").debug("aioquic", logger=record.name, message=record.getMessage())
        except Exception:  # a log line must never break the connection that produced it
            self.handleError(record)


def _route_aioquic(level: int) -> None:
    for name in ("quic", "http3"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [h for h in lg.handlers if not isinstance(h, _ToStructlog)] + [_ToStructlog()]
        lg.propagate = False
        lg.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)  # no formatting cost otherwise
