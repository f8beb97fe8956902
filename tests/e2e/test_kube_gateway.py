"""The operator's API gateway (``inori_operator.kube``) against the real API server."""

from __future__ import annotations

import kubernetes
from support.kube import Kube as ClusterClient

from inori_operator import kube as gateway


async def test_status_patches_leave_the_connection_clean_for_reuse(cluster, kube: ClusterClient, ns: str) -> None:  # type: ignore[no-untyped-def]
    """An unparsed status answer is still read off the wire, so the pooled connection is reused.

    Left unread, the answer would either make urllib3 drop the connection as "readable" or, when
    the rest of it arrives a moment later, be read as the next request's answer (BadStatusLine).
    """
    kube.create("webhooks", ns, {"kind": "Webhook", "metadata": {"name": "h"},
                                 "spec": {"url": "https://hooks.example.com/x", "events": ["vendor.created"]}})
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    ours = gateway.Kube(client, workers=1)
    try:
        big = "x" * 200_000  # an answer larger than one socket read
        pool = client.rest_client.pool_manager.connection_from_url(client.configuration.host)
        sockets = []  # kept alive, so that no two are ever the same object by accident
        for i in range(20):
            await ours.patch_status("webhooks", ns, "h", {"phase": "Active", "lastDelivery": {"error": f"{i}{big}"}})
            (connection,) = [c for c in pool.pool.queue if c is not None]
            sockets.append(connection.sock)
        assert all(s is sockets[0] for s in sockets), f"{len({id(s) for s in sockets})} sockets for 20 sequential patches on one pooled connection"
        assert kube.status("webhooks", ns, "h")["lastDelivery"]["error"].startswith("19")
    finally:
        ours.close()
