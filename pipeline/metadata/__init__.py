"""Metadata that names a flow's ends: the model, the inventory file, the time-versioned store, Kubernetes."""

from pipeline.metadata.inventory import Inventory, InventoryError, Problem, apply_inventory, load_inventory
from pipeline.metadata.model import KINDS, Center, IPAddress, Namespace, Network, Node, Pod, Site, Vpc
from pipeline.metadata.versions import OPEN, Change, MetadataStore, Version

__all__ = [
    "KINDS",
    "OPEN",
    "Center",
    "Change",
    "IPAddress",
    "Inventory",
    "InventoryError",
    "MetadataStore",
    "Namespace",
    "Network",
    "Node",
    "Pod",
    "Problem",
    "Site",
    "Version",
    "Vpc",
    "apply_inventory",
    "load_inventory",
]
