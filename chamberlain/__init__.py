"""Chamberlain: durable, permission-checked AI agent workflows on your own private model.

The layers import as ``chamberlain.agents`` (what the agent thinks with), ``chamberlain.tools``
(what it acts with), ``chamberlain.workflows`` (how it runs: Temporal, the permission gate,
audit) and ``chamberlain.server`` (where the world meets it: webhooks, API, CLI).
``chamberlain.examples`` holds the complete scenarios.
"""

__version__ = "0.2.0"
