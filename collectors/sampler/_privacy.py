"""Names (DNS query names, TLS server names, HTTP hosts) as a tenant allows them to leave the node."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from collectors.config import NamePrivacyConfig, SamplerConfig


class NamePrivacy:
    """Applies the first privacy rule naming a row's capture namespace, else the default."""

    def __init__(self, cfg: SamplerConfig):
        key = cfg.hash_key.get_secret_value().encode()
        if cfg.hash_key_file is not None:
            key = cfg.hash_key_file.read_bytes().strip()
        modes = [cfg.privacy, *cfg.privacy_rules]
        if any(m.mode == "hash" for m in modes) and not key:
            raise ValueError("sampler: privacy mode 'hash' needs hash_key or hash_key_file")
        self._key = key
        self._default = cfg.privacy
        self._by_ns = {ns: r for r in reversed(cfg.privacy_rules) for ns in r.namespaces}

    def rule(self, namespace: str) -> NamePrivacyConfig:
        return self._by_ns.get(namespace, self._default)

    def apply(self, names: np.ndarray, namespaces: np.ndarray) -> np.ndarray:
        """``names`` as each row's rule allows (one computation per distinct name and namespace)."""
        if self._default.mode == "keep" and not self._by_ns:
            return names
        out = names.copy()
        for ns in set(namespaces.tolist()):
            rule = self.rule(ns)
            if rule.mode == "keep":
                continue
            rows = np.flatnonzero(namespaces == ns)
            done = {n: self.one(n, rule) for n in set(names[rows].tolist())}
            out[rows] = [done[n] for n in names[rows]]
        return out

    def one(self, name: str, rule: NamePrivacyConfig) -> str:
        if not name or rule.mode == "keep":
            return name
        if rule.mode == "truncate":
            return ".".join(name.rstrip(".").split(".")[-rule.labels :])
        return "h:" + hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()[:16]


__all__ = ["NamePrivacy"]
