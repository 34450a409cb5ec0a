"""The HTTP edge: FastAPI app factory, routes, error table, middleware."""

from .app import create_app as create_app
from .app import create_app_from_env as create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
