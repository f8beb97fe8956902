"""Structured logs: one JSON object per line when not on a terminal, readable text when on one.

Only identifiers (namespace, name, event type, delivery id, key prefix) are ever logged: no
signing secret, plaintext key or request body passes through a log call in this package.
"""

from __future__ import annotations

import logging
import sys

import kopf


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    kopf.configure(
        verbose=level == "DEBUG",
        log_format=kopf.LogFormat.JSON if fmt == "json" else kopf.LogFormat.PLAIN,
        log_refkey="k8s" if fmt == "json" else None,
    )
    logging.getLogger().setLevel(level)
    # kopf logs every handled watch event at INFO; at thousands of events a second that is noise.
    for noisy in ("kopf.objects", "kubernetes.client.rest", "urllib3", "httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
