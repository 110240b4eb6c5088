"""The Helm chart: `helm lint`, `helm template` for the default and the three-center values, every
rendered object validated by kubeconform (strict) against the Kubernetes 1.34 API schemas, and what
the chart promises checked on the rendered objects: each netobs container's configuration is one
netobs accepts, least-privilege RBAC, non-root pods with limits, secrets only by reference, the pod
sampler switchable."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from netobs_app.cli import build_parser
from netobs_app.settings import load
from tests.deploy._tools import schemas, tool

pytestmark = pytest.mark.integration
CHART = Path(__file__).parents[2] / "deploy" / "helm" / "netobs"
THREE = CHART / "values-three-centers.yaml"


def helm(*args: str) -> str:
    r = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def render(*values: str, sets: tuple[str, ...] = ()) -> list[dict]:
    args = ["template", "netobs", str(CHART), "-n", "netobs"]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args)) if d]


def kubeconform(text: str) -> subprocess.CompletedProcess[str]:
    location = f"{schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-schema-location", location, "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("values", [(), (str(THREE),)], ids=["default", "three-centers"])
def test_lint_template_and_validate_every_object(values) -> None:
    lint = helm("lint", "--strict", str(CHART), *(a for v in values for a in ("-f", v)))
    assert "0 chart(s) failed" in lint
    docs = render(*values)
    r = kubeconform(yaml.safe_dump_all(docs))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Valid: {len(docs)}, Invalid: 0, Errors: 0, Skipped: 0" in r.stdout, r.stdout
    kinds = sorted(d["kind"] for d in docs)
    centers = 3 if values else 1
    assert kinds.count("DaemonSet") == centers and kinds.count("Deployment") == centers + 1
    assert kinds.count("PodDisruptionBudget") == centers + 1 and "Secret" not in kinds
    assert kinds.count("HorizontalPodAutoscaler") == (3 if values else 0)


def test_the_validator_rejects_what_the_api_server_would() -> None:
    docs = render(str(THREE))
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["resurces"] = {}  # a typo: unknown field
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["spec"]["replicas"] = "three"
    r = kubeconform(yaml.safe_dump_all([ds, dep]))
    assert r.returncode == 1 and "Invalid: 2" in r.stdout, r.stdout
    assert "resurces" in r.stdout and "replicas" in r.stdout


def _containers(docs: list[dict]):
    for d in docs:
        if d["kind"] in ("DaemonSet", "Deployment"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                yield d, c


def test_every_container_runs_a_configuration_netobs_accepts(monkeypatch, tmp_path) -> None:
    docs = render(str(THREE), sets=("agent.sampler.enabled=true", "agent.exporters.ipfix.enabled=true"))
    configs = {d["metadata"]["name"]: d["data"]["netobs.yaml"] for d in docs if d["kind"] == "ConfigMap"}
    parser, seen = build_parser(), set()
    for obj, c in _containers(docs):
        args = c["args"]
        assert args[:2] == ["--config", "/etc/netobs/netobs.yaml"]
        if args[2] != "sample":  # the pod sampler's sub-command is another helper's (issue pod-samples)
            parser.parse_args(args)
        seen.add(args[2])
        volume = next(v for v in obj["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        with monkeypatch.context() as m:
            for name in [k for k in os.environ if k.startswith("NETOBS")]:
                m.delenv(name)
            for e in c.get("env", []):
                if "value" in e:
                    m.setenv(e["name"], e["value"].replace("$(HOST_IP)", "192.0.2.21"))
                elif "secretKeyRef" in e.get("valueFrom", {}):
                    m.setenv(e["name"], "from-the-secret")
                elif e["name"].startswith("NETOBS__"):
                    m.setenv(e["name"], "node-1")
            path = tmp_path / "netobs.yaml"
            path.write_text(configs[volume["configMap"]["name"]])
            settings = load(path)
        if args[2] == "exporters":
            ex = settings.exporters
            assert ex.agent == "192.0.2.21" and ex.sflow.targets == ("192.0.2.21:6343",)
            assert ex.ipfix.targets == ("192.0.2.21:4739",) and ex.center in ("dc1", "dc2", "dc3")
            assert ex.bridges == ("br-int", "br-provider")
        if args[2] == "schedule":
            assert settings.control.leader_election.enabled
            assert settings.control.leader_election.lease_name == "netobs-scheduler"
        if args[2] in ("collect", "pipeline", "schedule"):
            assert settings.store.clickhouse.password.get_secret_value() == "from-the-secret"
            assert settings.store.clickhouse.cluster == "netobs"
    assert seen == {"collect", "exporters", "sample", "pipeline", "schedule"}


def test_least_privilege_and_hardening() -> None:
    docs = render(str(THREE))
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (reader,) = by_kind["ClusterRole"]
    verbs = {v for rule in reader["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch"}
    resources = {r for rule in reader["rules"] for r in rule["resources"]}
    assert resources == {
        "pods", "namespaces", "nodes", "services", "endpointslices", "networkpolicies", "subnets", "vpcs", "ips",
    }  # fmt: skip
    (role,) = by_kind["Role"]
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"leases"}
    assert [r.get("resourceNames") for r in role["rules"] if "update" in r["verbs"]] == [["netobs-scheduler"]]
    (binding,) = by_kind["ClusterRoleBinding"]
    assert [s["name"] for s in binding["subjects"]] == ["netobs-pipeline"]  # the sampler is off
    for obj, c in _containers(docs):
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        if obj["kind"] == "DaemonSet":
            assert pod["hostNetwork"] and pod["automountServiceAccountToken"] is False
            assert {"operator": "Exists"} in pod["tolerations"]
        for e in c.get("env", []):
            assert "PASSWORD" not in e["name"] or "secretKeyRef" in e["valueFrom"]
    policies = by_kind["NetworkPolicy"]
    assert {tuple(p["spec"]["policyTypes"]) for p in policies} == {("Ingress", "Egress")}


def test_the_pod_sampler_is_switchable() -> None:
    off = render(str(THREE))
    on = render(str(THREE), sets=("agent.sampler.enabled=true",))
    names = lambda docs: {c["name"] for o, c in _containers(docs) if o["kind"] == "DaemonSet"}  # noqa: E731
    assert "sampler" not in names(off) and "sampler" in names(on)
    sampler = next(c for o, c in _containers(on) if c["name"] == "sampler")
    assert sampler["args"][2] == "sample"
    assert sampler["securityContext"]["capabilities"]["add"] == ["NET_RAW", "NET_ADMIN"]
    binding = next(d for d in on if d["kind"] == "ClusterRoleBinding")
    assert {s["name"] for s in binding["subjects"]} == {"netobs-pipeline", "netobs-agent"}
