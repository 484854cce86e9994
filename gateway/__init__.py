"""polyrelay: an OpenAI-compatible gateway in front of many LLM providers."""

from .app import create_app
from .settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]
__version__ = "0.1.0"
