"""Sans-IO MoQT session: bytes and `now` in, transport actions and events out."""

from .core import Role, Session, SessionConfig

__all__ = ["Role", "Session", "SessionConfig"]
