"""Where the world meets Chamberlain: webhook ingress, the runs and approvals API, the ops
console, and the ``chamberlain`` command. ``create_app`` builds the HTTP server a deployment
runs behind its load balancer; ``load_app`` finds a business's tools, models and policies.

Errors of this layer, each one line that names the file, field or header and a fix::

    AppError (Exception)       the app module cannot be imported or lacks tools()/models()
    SourceError (ValueError)   the webhook sources file has mistakes (file:line each)
    PayloadError (ValueError)  a valid payload that cannot become a run (answered 422)
    SignatureError (Exception) a webhook's signature does not verify (answered 401)
"""

from chamberlain.server._app import App, AppError, load_app
from chamberlain.server._http import BackgroundServer, create_app
from chamberlain.server._settings import ServerSettings
from chamberlain.server._signatures import SignatureError, sign, verify
from chamberlain.server._sources import PayloadError, SourceCatalog, SourceError, WebhookSource

__all__ = [
    "App",
    "AppError",
    "BackgroundServer",
    "PayloadError",
    "ServerSettings",
    "SignatureError",
    "SourceCatalog",
    "SourceError",
    "WebhookSource",
    "create_app",
    "load_app",
    "sign",
    "verify",
]
