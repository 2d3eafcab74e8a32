"""Where the world meets Chamberlain: webhook ingress, the runs and approvals API, the ops
console, and the ``chamberlain`` command. ``create_app`` builds the HTTP server a deployment
runs behind its load balancer; ``load_app`` finds a business's tools, models and policies."""

from chamberlain.server._app import App, AppError, load_app
from chamberlain.server._http import BackgroundServer, create_app
from chamberlain.server._settings import ServerSettings
from chamberlain.server._signatures import SignatureError, sign, verify
from chamberlain.server._sources import SourceCatalog, WebhookSource

__all__ = [
    "App",
    "AppError",
    "BackgroundServer",
    "ServerSettings",
    "SignatureError",
    "SourceCatalog",
    "WebhookSource",
    "create_app",
    "load_app",
    "sign",
    "verify",
]
