"""The pipeline's configuration sections (pipeline, enrich), mounted by the composition root (``netobs_app.settings``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from netobs.config_base import Section


class PipelineConfig(Section):
    max_batch_rows: int = Field(100_000, ge=1, description="Rows gathered before one insert.")
    max_batch_delay_ms: int = Field(1000, ge=1, description="Longest a row waits before it is inserted.")
    max_buffered_rows: int = Field(
        300_000,
        ge=1,
        description="Rows held across all partitions before the pipeline pauses consumption (backpressure).",
    )
    dead_letter_dir: Path | None = Field(
        None,
        description="Directory for dead letters when the transport has no dead-letter topic (in-process); "
        "unset: unprocessable messages are only logged and counted.",
    )
    max_unknown_retries: int = Field(
        10,
        ge=0,
        description="Retries of a batch the store fails with an error no one classified (see "
        "netobs/store/errors.py); then it goes to the dead-letter destination. Transient errors (disk "
        "full, too many parts, read-only replica, network) are retried without limit.",
    )
    goflow2_topics: tuple[str, ...] = Field(
        (),
        description="Kafka topics written by goflow2 collectors (goflow2 -transport=kafka -format=bin: one "
        "protobuf FlowMessage per record), consumed besides transport.kafka.topic by the same consumer "
        "group and enriched and stored like netobs batches; records that are not FlowMessages are "
        "counted and dead-lettered. Needs transport.type kafka.",
    )
    goflow2_records_per_poll: int = Field(
        20_000, ge=1, description="Most goflow2 records (one flow each) taken by one poll."
    )


class KubernetesEnrichConfig(Section):
    enabled: bool = Field(
        False, description="Watch pods, namespaces, nodes and Kube-OVN CRDs for enrichment."
    )
    in_cluster: bool = Field(
        False, description="Use the pod's service account (in-cluster config) instead of a kubeconfig."
    )
    kubeconfig: Path | None = Field(
        None, description="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."
    )
    context: str | None = Field(None, description="kubeconfig context (default: the current one).")
    kube_ovn: bool = Field(
        True,
        description="Also watch the Kube-OVN CRDs: subnets, vpcs, ips, vlans, provider-networks, EIPs, "
        "NAT rules (OVN and iptables) and QoS policies (those a cluster does not serve are skipped).",
    )
    cluster: str = Field(
        "",
        description="Name of this cluster: every object watched here carries it, and flows exported by its "
        "nodes are named from its objects first (overlapping pod CIDRs). '' : one cluster, unnamed.",
    )
    cloud: str = Field("", description="Cloud the cluster runs in (cross_cloud path class).")
    watch_timeout_s: int = Field(300, ge=1, description="Server-side timeout of one watch request.")
    max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between reconnects after errors.")


class MetadataTopicConfig(Section):
    enabled: bool = Field(
        False,
        description="Distributed mode: the metadata sources (inventory, Kubernetes) publish every change to "
        "a compacted Kafka topic (connection settings from transport.kafka) and every pipeline replica "
        "builds its metadata view from that topic, so all replicas name flows alike. Off: each process "
        "applies its sources directly (embedded mode, no Kafka needed).",
    )
    topic: str = Field(
        "netobs-metadata",
        description="The topic: cleanup.policy=compact, one partition (one order for every replica), keyed "
        "by object (pod/<namespace>/<name>, network/<name>, ...), tombstones for deletions; created "
        "when missing.",
    )
    replication_factor: int = Field(
        1, ge=1, description="Replication factor when netobs creates the topic (3 on a production cluster)."
    )
    sync_timeout_s: float = Field(
        60,
        gt=0,
        description="How long a starting replica waits to have read the topic up to its end before it "
        "names flows (then it goes on, logging a warning).",
    )


class EnrichConfig(Section):
    inventory: Path | None = Field(
        None, description="Inventory YAML (sites, centers, nodes, networks, namespaces, static pods)."
    )
    kubernetes: KubernetesEnrichConfig = Field(default_factory=KubernetesEnrichConfig)
    clusters: tuple[KubernetesEnrichConfig, ...] = Field(
        (),
        description="Further Kubernetes clusters, each with its own kubeconfig/context (its own "
        "credentials) and a distinct cluster name; watched beside `kubernetes`.",
    )
    cmdb: Path | None = Field(
        None,
        description="CMDB export of legacy hosts and VMs (CSV or JSON: name, addresses, application, tenant, "
        "zone, center, owner); rows it cannot use are logged with their line and skipped.",
    )
    metadata_topic: MetadataTopicConfig = Field(default_factory=MetadataTopicConfig)
