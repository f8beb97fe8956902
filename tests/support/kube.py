"""A small test client over the real API server, plus polling helpers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "integrations.inori.io", "v1alpha1"
T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, message: str = "") -> T:
    """Poll until ``check`` returns a truthy value (returned) or raise with the last error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except (AssertionError, ApiException, KeyError, TypeError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {message} (last: {last!r})")


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.ext = kubernetes.client.ApiextensionsV1Api(self.client)

    def namespace(self, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    def status(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return self.get(plural, namespace, name).get("status") or {}

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, patch, _content_type="application/merge-patch+json"
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    def exists(self, plural: str, namespace: str, name: str) -> bool:
        try:
            self.get(plural, namespace, name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})

    def read_secret(self, namespace: str, name: str) -> Any | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events_for(self, namespace: str, name: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(namespace).items if e.involved_object.name == name]

    def webhook(self, namespace: str, name: str, url: str, events: list[str], **spec: Any) -> dict[str, Any]:
        return self.create("webhooks", namespace, {"kind": "Webhook", "metadata": {"name": name},
                                                   "spec": {"url": url, "events": events, **spec}})

    def event(self, namespace: str, type_: str, data: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
        return self.create("integrationevents", namespace, {
            "kind": "IntegrationEvent",
            "metadata": {"generateName": type_.replace(".", "-").replace("_", "-") + "-"},
            "spec": {"type": type_, "data": data or {}, **spec},
        })


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
