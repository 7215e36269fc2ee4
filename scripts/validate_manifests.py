"""Validates rendered kustomizations (run by scripts/validate-manifests in
.venv-k8s): every resource against the Kubernetes schemas (strict), then the
invariants the deployment relies on, so an edit cannot silently drop them.

    validate_manifests.py --min-version 1.29 NAME=rendered.yaml ...
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tomllib
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import yaml

SIDECAR = "wallet-balancer"
SERVICE_NAME = "walletbalancer.v1.WalletBalancer"


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
        for dep in self.of_kind("Deployment"):
            self.deployment(dep)
        if not self.of_kind("Deployment"):
            self.fail("no Deployment rendered")

    def deployment(self, dep: dict[str, Any]) -> None:
        name = dep["metadata"]["name"]
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        self.check(spec.get("replicas") == 1, f"{name}: replicas must be 1 (one signer per wallet)")
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
            self.check("persistentVolumeClaim" in v, f"{name}: the journal volume must be a PersistentVolumeClaim")
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

        self.network_policy(name, labels)

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

    def network_policy(self, dep: str, labels: dict[str, str]) -> None:
        for np in self.of_kind("NetworkPolicy"):
            sel = np["spec"].get("podSelector", {}).get("matchLabels", {})
            if sel and all(labels.get(k) == v for k, v in sel.items()):
                types = np["spec"].get("policyTypes", [])
                self.check("Ingress" in types and "Egress" in types, f"{dep}: NetworkPolicy must restrict Ingress and Egress")
                self.check(not np["spec"].get("ingress"), f"{dep}: NetworkPolicy must allow no ingress")
                return
        self.fail(f"{dep}: no NetworkPolicy selects the pod")


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
                f"{' and '.join(versions)} schemas (strict), invariants hold: {kinds}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
