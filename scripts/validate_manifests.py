"""Validates rendered kustomizations (run by scripts/validate-manifests in
.venv-k8s): every resource against its schema, strict (unknown fields
fail): the Kubernetes OpenAPI schemas (kubernetes-validate), and for the
prometheus-operator kinds (PodMonitor, PrometheusRule) the CRDs' own
schemas vendored in deploy/k8s/schemas; then the invariants the deployment
relies on, so an edit cannot silently drop them: the sidecar and its key
installer, probes, the journal volume, the NetworkPolicies, the scrape
target, and alert rules that parse (promql-parser), name only metrics the
sidecar exports (src/telemetry/metrics.rs) and link an existing runbook
section (docs/runbook.md).

    validate_manifests.py --min-version 1.29 NAME=rendered.yaml ...
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import yaml

SIDECAR = "wallet-balancer"
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"
WORKLOADS = ("Deployment", "StatefulSet")
ROOT = Path(__file__).resolve().parent.parent
CRD_SCHEMAS = ROOT / "deploy" / "k8s" / "schemas"
METRICS_RS = ROOT / "src" / "telemetry" / "metrics.rs"
RUNBOOK = ROOT / "docs" / "runbook.md"


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The vendored CRD schema of a kind (kubeconform's file naming), made
    strict: an object that lists its properties admits no others (as the API
    server's field validation would reject them), unless it says it keeps
    unknown fields."""
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS / group / f"{kind.lower()}_{version}.json"
    if not group or not path.is_file():
        return None

    def strict(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            # Go's RE2 takes flags anywhere, Python's re only first.
            if isinstance(node.get("pattern"), str) and node["pattern"].startswith("^(?i)"):
                node["pattern"] = "(?i)^" + node["pattern"][5:]
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            return node
        if isinstance(node, list):
            return [strict(v) for v in node]
        return node

    schema = strict(json.loads(path.read_text()))
    # metadata is checked by Kubernetes itself; the CRD leaves it open.
    return schema


@functools.cache
def exported_metrics() -> frozenset[str]:
    """Every metric name the sidecar registers (prefix included)."""
    text = METRICS_RS.read_text()
    names = re.findall(r'(?:counter|gauge|histogram|opts)\(\s*"([a-z_]+)"', text)
    return frozenset(f"wallet_balancer_{n}" for n in names)


@functools.cache
def runbook_anchors() -> frozenset[str]:
    """GitHub-style anchors of docs/runbook.md's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return frozenset(anchors)


def under(path: str, mount: str) -> bool:
    return PurePosixPath(mount) in PurePosixPath(path).parents


class Checker:
    def __init__(self, name: str, docs: list[dict[str, Any]]):
        self.name = name
        self.docs = docs
        self.errors: list[str] = []

    def fail(self, msg: str) -> None:
        self.errors.append(msg)

    def check(self, cond: object, msg: str) -> bool:
        if not cond:
            self.fail(msg)
        return bool(cond)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def run(self) -> None:
        workloads = [d for d in self.docs if d.get("kind") in WORKLOADS]
        for w in workloads:
            self.workload(w)
        if not workloads:
            self.fail("no Deployment or StatefulSet rendered")
        for rule in self.of_kind("PrometheusRule"):
            self.prometheus_rule(rule)

    def workload(self, dep: dict[str, Any]) -> None:
        name = f"{dep['kind']}/{dep['metadata']['name']}"
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        self.check(spec.get("replicas") == 1, f"{name}: replicas must be 1 (one signer per wallet)")
        if dep["kind"] == "Deployment":
            self.check(spec.get("strategy", {}).get("type") == "Recreate", f"{name}: strategy must be Recreate")
        self.check(pod.get("automountServiceAccountToken") is False, f"{name}: automountServiceAccountToken must be false")
        psc = pod.get("securityContext", {})
        self.check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        self.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: pod seccomp RuntimeDefault")

        inits = pod.get("initContainers", [])
        mains = pod.get("containers", [])
        for c in inits + mains:
            self.container(name, c)

        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "secret" in v:
                mode = v["secret"].get("defaultMode")
                self.check(mode is not None and mode & 0o007 == 0, f"{name}: secret volume {v['name']}: defaultMode must not be world-readable")

        sidecars = [c for c in inits if c["name"] == SIDECAR]
        if not self.check(len(sidecars) == 1, f"{name}: no init container {SIDECAR!r} (the native sidecar)"):
            return
        sc = sidecars[0]
        self.check(sc.get("restartPolicy") == "Always", f"{name}: {SIDECAR} must have restartPolicy Always (native sidecar)")
        config = self.sidecar_config(name, sc, volumes)
        if config is None:
            return
        server = config.get("server", {})
        listen = server.get("listen", "127.0.0.1:50051")
        host = listen.rsplit(":", 1)[0].strip("[]")
        authenticated = "auth_token_file" in server or "tls_client_ca_file" in server
        self.check(
            ipaddress.ip_address(host).is_loopback or authenticated,
            f"{name}: server.listen {listen} is beyond loopback without auth_token_file or mTLS",
        )
        health = server.get("health_listen")
        probe_port = int(health.rsplit(":", 1)[1]) if health else int(listen.rsplit(":", 1)[1])
        for probe in ("startupProbe", "readinessProbe"):
            g = sc.get(probe, {}).get("grpc")
            if self.check(g, f"{name}: {SIDECAR} {probe} must be a grpc probe"):
                self.check(g.get("port") == probe_port, f"{name}: {probe} port {g.get('port')} != health port {probe_port}")
                self.check(g.get("service") == SERVICE_NAME, f"{name}: {probe} service must be {SERVICE_NAME}")
        self.check("livenessProbe" in sc, f"{name}: {SIDECAR} has no livenessProbe")

        grace = int(server.get("shutdown_grace_secs", 30))
        request = int(server.get("request_timeout_secs", 120))
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        self.check(
            tgps >= request + grace + 2,
            f"{name}: terminationGracePeriodSeconds {tgps} < request_timeout_secs {request} + shutdown_grace_secs {grace} + 2",
        )

        mounts = {m["mountPath"]: m for m in sc.get("volumeMounts", [])}
        journal = config.get("journal", {}).get("path", "wallet-balancer.journal")
        jm = [m for p, m in mounts.items() if under(journal, p)]
        if self.check(jm, f"{name}: journal.path {journal} is on no volume of {SIDECAR}"):
            v = volumes.get(jm[0]["name"], {})
            claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
            self.check(
                "persistentVolumeClaim" in v or (not v and jm[0]["name"] in claims),
                f"{name}: the journal volume {jm[0]['name']} must be a PersistentVolumeClaim or a volumeClaimTemplate",
            )
            self.check(not jm[0].get("readOnly"), f"{name}: the journal volume is mounted read-only")

        key = config.get("wallet", {}).get("private_key_file")
        if self.check(key, f"{name}: wallet.private_key_file is not set"):
            km = [m for p, m in mounts.items() if under(key, p)]
            if self.check(km, f"{name}: wallet.private_key_file {key} is on no volume of {SIDECAR}"):
                v = volumes.get(km[0]["name"], {})
                self.check(v.get("emptyDir", {}).get("medium") == "Memory", f"{name}: the key volume must be a memory emptyDir")
                installers = [c for c in inits[: inits.index(sc)] if any(m["name"] == km[0]["name"] for m in c.get("volumeMounts", []))]
                self.check(installers, f"{name}: no init container installs the key before {SIDECAR}")
                for c in mains:
                    for m in c.get("volumeMounts", []):
                        self.check(
                            m["name"] != km[0]["name"] and "secret" not in volumes.get(m["name"], {}),
                            f"{name}: container {c['name']} mounts key material ({m['name']})",
                        )

        self.network_policy(name, labels, config)
        self.pod_monitor(name, labels, sc, config)

    def pod_monitor(self, name: str, labels: dict[str, str], sc: dict[str, Any], config: dict[str, Any]) -> None:
        listen = config.get("telemetry", {}).get("metrics_listen")
        if not self.check(listen, f"{name}: telemetry.metrics_listen is not set (no metrics to scrape)"):
            return
        host, port = listen.rsplit(":", 1)
        self.check(not ipaddress.ip_address(host.strip("[]")).is_loopback, f"{name}: metrics_listen {listen} is not reachable by a scraper")
        ports = {p.get("name"): p["containerPort"] for p in sc.get("ports", [])}
        monitors = [
            m for m in self.of_kind("PodMonitor")
            if all(labels.get(k) == v for k, v in m["spec"].get("selector", {}).get("matchLabels", {}).items())
        ]
        if not self.check(monitors, f"{name}: no PodMonitor selects the pod"):
            return
        for m in monitors:
            for ep in m["spec"].get("podMetricsEndpoints", []):
                self.check(
                    ports.get(ep.get("port")) == int(port),
                    f"{name}: PodMonitor {m['metadata']['name']} scrapes port {ep.get('port')!r}, "
                    f"not the sidecar's metrics port {port} ({ports})",
                )

    def prometheus_rule(self, rule: dict[str, Any]) -> None:
        n = f"PrometheusRule/{rule['metadata']['name']}"
        alerts = 0
        for group in rule["spec"].get("groups", []):
            for r in group.get("rules", []):
                what = f"{n}: {r.get('alert') or r.get('record')}"
                try:
                    promql_parser.parse(r["expr"])
                except ValueError as e:
                    self.fail(f"{what}: expr does not parse: {e}")
                for metric in set(re.findall(r"\bwallet_balancer_[a-z_]+", r["expr"])):
                    base = re.sub(r"_(bucket|count|sum)$", "", metric)
                    self.check(
                        metric in exported_metrics() or base in exported_metrics(),
                        f"{what}: {metric} is not a metric the sidecar exports (src/telemetry/metrics.rs)",
                    )
                if "alert" in r:
                    alerts += 1
                    ann = r.get("annotations", {})
                    self.check(r.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"{what}: severity label")
                    self.check(ann.get("summary") and ann.get("description"), f"{what}: summary and description")
                    url = ann.get("runbook_url", "")
                    anchor = url.partition("#")[2]
                    self.check(
                        url.startswith("docs/runbook.md#") and anchor in runbook_anchors(),
                        f"{what}: runbook_url {url!r} is no section of docs/runbook.md",
                    )
        self.check(alerts, f"{n}: no alert")

    def sidecar_config(self, name: str, sc: dict[str, Any], volumes: dict[str, Any]) -> dict[str, Any] | None:
        args = sc.get("args", [])
        path = args[args.index("--config") + 1] if "--config" in args else "/etc/wallet-balancer/config.toml"
        for m in sc.get("volumeMounts", []):
            if under(path, m["mountPath"]) and "configMap" in volumes.get(m["name"], {}):
                cm_name = volumes[m["name"]]["configMap"]["name"]
                key = str(PurePosixPath(path).relative_to(m["mountPath"]))
                for cm in self.of_kind("ConfigMap"):
                    if cm["metadata"]["name"] == cm_name and key in cm.get("data", {}):
                        try:
                            return tomllib.loads(cm["data"][key])
                        except tomllib.TOMLDecodeError as e:
                            self.fail(f"{name}: {cm_name}/{key} is not valid TOML: {e}")
                            return None
                self.fail(f"{name}: ConfigMap {cm_name} with key {key} is not rendered")
                return None
        self.fail(f"{name}: {path} is not mounted from a ConfigMap in {SIDECAR}")
        return None

    def container(self, dep: str, c: dict[str, Any]) -> None:
        n = f"{dep}/{c['name']}"
        sc = c.get("securityContext", {})
        self.check(sc.get("allowPrivilegeEscalation") is False, f"{n}: allowPrivilegeEscalation must be false")
        self.check(sc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem must be true")
        self.check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{n}: capabilities must drop ALL")
        self.check(sc.get("runAsNonRoot") is True, f"{n}: runAsNonRoot")
        self.check(sc.get("privileged") is not True, f"{n}: privileged")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                self.check(r in res.get(kind, {}), f"{n}: resources.{kind}.{r} missing")

    def network_policy(self, dep: str, labels: dict[str, str], config: dict[str, Any]) -> None:
        """The pod is isolated both ways, and the only ingress any policy
        admits is the metrics port, from a selected scraper."""
        listen = config.get("telemetry", {}).get("metrics_listen")
        metrics_port = int(listen.rsplit(":", 1)[1]) if listen else None
        selecting = [
            np for np in self.of_kind("NetworkPolicy")
            if (sel := np["spec"].get("podSelector", {}).get("matchLabels", {}))
            and all(labels.get(k) == v for k, v in sel.items())
        ]
        if not self.check(selecting, f"{dep}: no NetworkPolicy selects the pod"):
            return
        types = {t for np in selecting for t in np["spec"].get("policyTypes", [])}
        self.check("Ingress" in types and "Egress" in types, f"{dep}: NetworkPolicies must restrict Ingress and Egress")
        for np in selecting:
            for rule in np["spec"].get("ingress", []):
                ports = [p.get("port") for p in rule.get("ports", [])]
                self.check(
                    ports and all(p == metrics_port for p in ports),
                    f"{dep}: NetworkPolicy {np['metadata']['name']} admits ingress to {ports or 'every port'}, "
                    f"only the metrics port {metrics_port} may be",
                )
                self.check(
                    rule.get("from") and all("ipBlock" not in f for f in rule["from"]),
                    f"{dep}: NetworkPolicy {np['metadata']['name']}: ingress from anywhere",
                )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--min-version", required=True)
    p.add_argument("renders", nargs="+", metavar="NAME=FILE")
    args = p.parse_args()
    versions = [args.min_version, kubernetes_validate.latest_version()]
    failed = 0
    for item in args.renders:
        name, path = item.split("=", 1)
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        errors: list[str] = []
        if not docs:
            errors.append("renders no resource")
        for doc in docs:
            what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            schema = crd_schema(doc.get("apiVersion", ""), doc.get("kind", ""))
            if schema is not None:
                for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
                    errors.append(f"{what} (CRD schema): {'.'.join(str(x) for x in e.absolute_path)}: {e.message}")
                continue
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    errors.append(f"{what} (Kubernetes {v}): {'.'.join(str(x) for x in e.path)}: {e.message}")
                except Exception as e:  # noqa: BLE001 - unknown kinds, schema errors
                    errors.append(f"{what} (Kubernetes {v}): {type(e).__name__}: {e}")
        checker = Checker(name, docs)
        checker.run()
        errors += checker.errors
        if errors:
            failed += 1
            print(f"validate-manifests: {name}: FAILED", file=sys.stderr)
            for e in errors:
                print(f"  - {e}", file=sys.stderr)
        else:
            kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
            print(
                f"validate-manifests: {name}: {len(docs)} resources valid against the Kubernetes "
                f"{' and '.join(versions)} schemas and the vendored CRD schemas (strict), invariants hold: {kinds}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
