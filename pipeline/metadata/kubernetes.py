"""Kubernetes source: list + watch of pods, namespaces, nodes and Kube-OVN CRDs into the metadata store.

One thread per resource, with the official ``kubernetes`` client: list (the whole truth:
keys no longer listed are closed), then watch from the list's ``resourceVersion``;
ADDED/MODIFIED open a new version, DELETED closes it. A 410 Gone (the version expired
from the server's history) triggers a relist; other errors a reconnect with exponential
backoff. A malformed object is logged by name and skipped; the rest keeps flowing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from pipeline.metadata import k8s_convert
from pipeline.metadata.versions import Change, MetadataStore

log = logging.getLogger(__name__)
SOURCE = "kubernetes"
CORE = ("pods", "namespaces", "nodes", "services")
_MALFORMED = object()
KUBE_OVN = ("subnets", "vpcs", "ips")
#: With the underlay, NAT/EIP and QoS resources (what ``from_config`` watches with ``kube_ovn``).
KUBE_OVN_ALL = KUBE_OVN + k8s_convert.KUBE_OVN_NETWORK
#: Kinds fed by several resources: each resource replaces only what it listed itself.
_SHARED_KINDS = ("nat", "eip")


class KubernetesSource:
    """Feeds a :class:`MetadataStore` from a Kubernetes API server. Constructed inert."""

    def __init__(
        self,
        meta: MetadataStore,
        api_client: Any,
        resources: tuple[str, ...] = CORE + KUBE_OVN,
        watch_timeout_s: int = 300,
        max_backoff_s: float = 30.0,
        clock: Callable[[], int] | None = None,
        cluster: str = "",
    ):
        self.meta, self.api_client, self.resources = meta, api_client, resources
        #: Every object this source writes belongs to ``cluster`` (its key carries it).
        self.cluster = cluster
        self.source = f"{SOURCE}:{cluster}" if cluster else SOURCE
        self.watch_timeout_s, self.max_backoff_s = watch_timeout_s, max_backoff_s
        self.clock = clock or (lambda: int(time.time() * 1000))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[Any] = []
        self.problems: list[str] = []
        self.relists = 0
        self.synced = {r: threading.Event() for r in resources}

    @classmethod
    def from_config(cls, meta: MetadataStore, cfg: Any) -> KubernetesSource:
        """From ``netobs.config.KubernetesEnrichConfig``: in-cluster or a kubeconfig."""
        from kubernetes import client, config

        conf = client.Configuration()
        if cfg.in_cluster:
            config.load_incluster_config(client_configuration=conf)
        else:
            path = str(cfg.kubeconfig) if cfg.kubeconfig else None
            config.load_kube_config(config_file=path, context=cfg.context, client_configuration=conf)
        resources = CORE + (KUBE_OVN_ALL if cfg.kube_ovn else ())
        # One long-lived watch per resource: a connection each (the default pool holds ~10).
        conf.connection_pool_maxsize = len(resources) + 2
        api = client.ApiClient(conf)
        cluster = getattr(cfg, "cluster", "")
        return cls(meta, api, resources, cfg.watch_timeout_s, cfg.max_backoff_s, cluster=cluster)

    def _source(self, res: str) -> str:
        kind, _ = k8s_convert.CONVERTERS[res]
        return f"{self.source}/{res}" if kind in _SHARED_KINDS else self.source

    def start(self) -> None:
        for res in self.resources:
            name = f"k8s-{self.cluster}-{res}" if self.cluster else f"k8s-{res}"
            t = threading.Thread(target=self._run, args=(res,), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        for w in list(self._watches):
            w.stop()
        for t in self._threads:
            t.join(timeout_s)

    def wait_synced(self, timeout_s: float = 10.0) -> bool:
        """True once every resource was listed at least once."""
        deadline = time.monotonic() + timeout_s
        return all(e.wait(max(0.0, deadline - time.monotonic())) for e in self.synced.values())

    def _lister(self, res: str) -> Callable[..., Any]:
        from kubernetes import client

        if res in CORE:
            core = client.CoreV1Api(self.api_client)
            listers: dict[str, Callable[..., Any]] = {
                "pods": core.list_pod_for_all_namespaces,
                "namespaces": core.list_namespace,
                "nodes": core.list_node,
                "services": core.list_service_for_all_namespaces,
            }
            return listers[res]
        custom = client.CustomObjectsApi(self.api_client)

        def list_crd(**kw: Any) -> Any:
            return custom.list_cluster_custom_object("kubeovn.io", "v1", res, **kw)

        return list_crd

    def _run(self, res: str) -> None:
        from kubernetes.client.rest import ApiException

        lister, rv, backoff = self._lister(res), None, 0.5
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list(res, lister)
                rv = self._watch(res, lister, rv)
                backoff = 0.5
            except ApiException as e:
                if e.status == 404 and res in k8s_convert.KUBE_OVN_NETWORK:
                    # A Kube-OVN feature this cluster does not run (no such CRD): nothing to watch.
                    log.info("kubernetes %s: not served by this cluster (404), not watched", res)
                    self.synced[res].set()
                    return
                if e.status == 410:
                    log.info("kubernetes %s: resourceVersion %s expired (410 Gone), relisting", res, rv)
                    self.relists += 1
                    rv = None
                    continue
                backoff = self._backoff(res, e, backoff)
            except Exception as e:  # connection refused/reset, timeouts: the server comes back
                backoff = self._backoff(res, e, backoff)

    def _backoff(self, res: str, err: BaseException, delay: float) -> float:
        log.warning("kubernetes %s: %s; retrying in %.1fs", res, str(err).splitlines()[0][:200], delay)
        self._stop.wait(delay)
        return min(delay * 2, self.max_backoff_s)

    def _list(self, res: str, lister: Callable[..., Any]) -> str:
        result = lister()
        data = result if isinstance(result, dict) else self.api_client.sanitize_for_serialization(result)
        kind, _ = k8s_convert.CONVERTERS[res]
        converted = (self._convert(res, item) for item in data.get("items") or [])
        objs = [o for o in converted if o is not None and o is not _MALFORMED]
        # First sight: a pod from its creationTimestamp; namespaces, nodes and CRDs as known since ever
        # (their labels are what names old flows in a backfill).
        self.meta.replace_all(
            [kind], objs, self.clock(), source=self._source(res), new_from=None if kind == "pod" else 0
        )
        self.synced[res].set()
        return str((data.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, res: str, lister: Callable[..., Any], rv: str) -> str:
        from kubernetes import watch

        w = watch.Watch()
        self._watches.append(w)
        try:
            stream = w.stream(
                lister, resource_version=rv, timeout_seconds=self.watch_timeout_s, allow_watch_bookmarks=True
            )
            for event in stream:
                if self._stop.is_set():
                    break
                raw = event.get("raw_object") or {}
                rv = str((raw.get("metadata") or {}).get("resourceVersion") or rv)
                if event.get("type") != "BOOKMARK":
                    self._event(res, event["type"], raw)
        finally:
            self._watches.remove(w)
        return rv

    def _event(self, res: str, typ: str, raw: dict) -> None:
        kind, _ = k8s_convert.CONVERTERS[res]
        key = k8s_convert.key_of(kind, raw, self.cluster)
        obj = None if typ == "DELETED" else self._convert(res, raw)
        if obj is _MALFORMED:
            return  # keep what was known about it
        src = self._source(res)
        change = Change.delete(kind, key, src) if obj is None else Change.upsert(obj, src)
        self.meta.apply([change], self.clock())

    def _convert(self, res: str, raw: dict) -> Any:
        """The model object, None (nothing to name), or ``_MALFORMED`` (logged and skipped)."""
        try:
            obj = k8s_convert.CONVERTERS[res][1](raw)
            return (
                obj.model_copy(update={"cluster": self.cluster}) if obj is not None and self.cluster else obj
            )
        except (ValidationError, ValueError, TypeError, KeyError, AttributeError) as e:
            meta = raw.get("metadata") or {}
            name = "/".join(x for x in (meta.get("namespace"), meta.get("name")) if x) or "(unnamed)"
            where = f"kubernetes[{self.cluster}]" if self.cluster else "kubernetes"
            msg = f"{where} {res} {name}: malformed, skipped: {_reason(e)}"
            log.error(msg)
            self.problems.append(msg)
            return _MALFORMED


def _reason(e: BaseException) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
    return str(e)
