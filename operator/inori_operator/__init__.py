"""Kubernetes operator for Inori integrations: signed outgoing webhooks and API keys."""

__version__ = "0.1.0"
