"""Offline validation of the deployment manifests (deploy/README.md, "Validation").

  python deploy/validate_manifests.py k8s FILE --kube-version 1.33.0 [--external-secret NAME ...]
      Rendered Kubernetes manifests (helm template's output): each object against the strict
      Kubernetes JSON schema of each version (kubernetes-validate), then the references between
      objects (selectors, HPA target, ports, config and secret names, volumes) and the pod
      security baseline of the chart (non-root, read-only root filesystem, no capabilities,
      requests and limits).
  python deploy/validate_manifests.py aws DIR
      ECS / EventBridge / Application Auto Scaling / ELB JSON: each file against botocore's own
      service model for the call it is the input of (by its name's suffix, below), with
      botocore's ParamValidator plus the model's enums, maxima and patterns; placeholders
      (<account>, <region>, ...) are filled with sample values first; then Fargate's cpu / memory
      pairs and the references between the files.
  python deploy/validate_manifests.py yaml FILE
      Print the YAML documents of FILE as one JSON list (for the tests' own checks).

Every problem is printed as one line `ERROR <where>: <what>`; the exit code is 1 when there was
any. Nothing here talks to a cluster or to AWS.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

# ---------------------------------------------------------------- Kubernetes


def load_yaml_docs(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_specs(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod template metadata, pod spec) of a workload object, if it is one."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        t = spec.get("template") or {}
        return [(t.get("metadata") or {}, t.get("spec") or {})]
    if kind == "CronJob":
        t = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return [(t.get("metadata") or {}, t.get("spec") or {})]
    if kind == "Pod":
        return [(doc.get("metadata") or {}, spec)]
    return []


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_schemas(docs: list[dict[str, Any]], versions: list[str], err: Callable[[str], None]) -> None:
    import kubernetes_validate.utils as kv

    for doc in docs:
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(root)"
                err(f"{name_of(doc)} (Kubernetes {e.version}, strict): {path}: {e.message}")
            except kv.SchemaNotFoundError:
                err(f"{name_of(doc)}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")


def check_references(docs: list[dict[str, Any]], external_secrets: set[str], err: Callable[[str], None]) -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", ""), {})[(doc.get("metadata") or {}).get("name", "")] = doc
    config_maps = set(by_kind.get("ConfigMap", {}))
    secrets = set(by_kind.get("Secret", {})) | external_secrets
    service_accounts = set(by_kind.get("ServiceAccount", {})) | {"default"}
    deployments = by_kind.get("Deployment", {})

    def pod_labels(d: dict[str, Any]) -> dict[str, str]:
        return (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}

    for doc in docs:
        where = name_of(doc)
        spec = doc.get("spec") or {}
        if doc.get("kind") == "Deployment":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not matches(selector, pod_labels(doc)):
                err(f"{where}: selector {selector} does not match its pod template's labels")
        if doc.get("kind") == "Service":
            selected = [d for d in deployments.values() if matches(spec.get("selector") or {}, pod_labels(d))]
            if not selected:
                err(f"{where}: selector {spec.get('selector')} matches no Deployment's pods")
            for port in spec.get("ports") or []:
                target = port.get("targetPort")
                for d in selected:
                    names = {p.get("name") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []}
                    numbers = {p.get("containerPort") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []}
                    if target not in names and target not in numbers:
                        err(f"{where}: targetPort {target} is no port of {name_of(d)}")
        if doc.get("kind") == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            target = deployments.get(ref.get("name", "")) if ref.get("kind") == "Deployment" else None
            if target is None:
                err(f"{where}: scaleTargetRef {ref} names no rendered Deployment")
            else:
                if "replicas" in (target.get("spec") or {}):
                    err(f"{where}: {name_of(target)} sets replicas, which every upgrade would reset under the HPA")
                for c in target["spec"]["template"]["spec"]["containers"]:
                    if not ((c.get("resources") or {}).get("requests") or {}).get("cpu"):
                        err(f"{where}: container {c.get('name')} of {name_of(target)} has no CPU request to scale on")
        if doc.get("kind") == "PodDisruptionBudget":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(matches(selector, pod_labels(d)) for d in deployments.values()):
                err(f"{where}: selector {selector} matches no Deployment's pods")
        for meta, pod in pod_specs(doc):
            check_pod(where, meta, pod, config_maps, secrets, service_accounts, err)


def check_pod(
    where: str,
    meta: dict[str, Any],
    pod: dict[str, Any],
    config_maps: set[str],
    secrets: set[str],
    service_accounts: set[str],
    err: Callable[[str], None],
) -> None:
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for v in volumes.values():
        if "secret" in v and v["secret"].get("secretName") not in secrets:
            err(f"{where}: volume {v.get('name')} names Secret {v['secret'].get('secretName')}, which is neither rendered nor declared external")
        if "configMap" in v and v["configMap"].get("name") not in config_maps:
            err(f"{where}: volume {v.get('name')} names ConfigMap {v['configMap'].get('name')}, which is not rendered")
    if pod.get("serviceAccountName", "default") not in service_accounts:
        err(f"{where}: serviceAccountName {pod.get('serviceAccountName')} is not rendered")
    pod_sc = pod.get("securityContext") or {}
    containers = (pod.get("initContainers") or []) + (pod.get("containers") or [])
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        for src in c.get("envFrom") or []:
            if "configMapRef" in src and src["configMapRef"].get("name") not in config_maps:
                err(f"{cw}: envFrom ConfigMap {src['configMapRef'].get('name')} is not rendered")
            if "secretRef" in src and src["secretRef"].get("name") not in secrets:
                err(f"{cw}: envFrom Secret {src['secretRef'].get('name')} is neither rendered nor declared external")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                err(f"{cw}: volumeMount {m.get('name')} names no volume of the pod")
        ports = {p.get("name") for p in c.get("ports") or []} | {p.get("containerPort") for p in c.get("ports") or []}
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(probe_name) or {}
            port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
            if port is not None and port not in ports:
                err(f"{cw}: {probe_name} port {port} is no port of the container")
        # The chart's baseline (Pod Security Standards, "restricted", plus a read-only root).
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            err(f"{cw}: runAsNonRoot is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            err(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            err(f"{cw}: readOnlyRootFilesystem is not true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            err(f"{cw}: capabilities do not drop ALL")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            err(f"{cw}: no seccompProfile RuntimeDefault")
        res = c.get("resources") or {}
        if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
            err(f"{cw}: memory request and limit are required")


def run_k8s(args: argparse.Namespace) -> int:
    errors: list[str] = []
    err = errors.append
    docs = load_yaml_docs(args.file)
    if not docs:
        err(f"{args.file}: no objects")
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            err(f"{args.file}: a document without kind / apiVersion")
    docs = [d for d in docs if isinstance(d, dict) and "kind" in d]
    check_schemas(docs, args.kube_version, err)
    check_references(docs, set(args.external_secret or []), err)
    return report(errors, f"{len(docs)} objects valid for Kubernetes {', '.join(args.kube_version)}")


# ---------------------------------------------------------------- AWS

# File name suffix -> (botocore service, operation whose input the file is).
AWS_FILES = {
    "-task-definition.json": ("ecs", "RegisterTaskDefinition"),
    "-service.json": ("ecs", "CreateService"),
    "-schedule-rule.json": ("events", "PutRule"),
    "-schedule-targets.json": ("events", "PutTargets"),
    "-scalable-target.json": ("application-autoscaling", "RegisterScalableTarget"),
    "-scaling-policy.json": ("application-autoscaling", "PutScalingPolicy"),
    "-target-group.json": ("elbv2", "CreateTargetGroup"),
}

# Placeholders the files may hold, and the sample values they are validated with.
PLACEHOLDERS = {
    "account": "123456789012",
    "region": "eu-west-1",
    "tag": "0.1.0",
    "kafka-brokers": "b-1.fashion.abc123.c2.kafka.eu-west-1.amazonaws.com:9096",
    "schema-registry-url": "http://schema-registry.fashion-recsys.local:8081",
    "subnet-a": "subnet-0123456789abcdef0",
    "subnet-b": "subnet-0fedcba9876543210",
    "security-group": "sg-0123456789abcdef0",
    "target-group-id": "0123456789abcdef",
    "vpc": "vpc-0123456789abcdef0",
}

# Fargate's task sizes: cpu units -> allowed memory (MiB).
FARGATE_MEMORY = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}

ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/fashion-recsys:[A-Za-z0-9._-]+$")
SECRET_ARN = re.compile(r"^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(:[A-Za-z0-9_]*:[A-Za-z0-9_-]*:[A-Za-z0-9_-]*)?$")


def fill_placeholders(text: str, where: str, err: Callable[[str], None]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in PLACEHOLDERS:
            err(f"{where}: unknown placeholder <{name}> (known: {', '.join(sorted(PLACEHOLDERS))})")
            return m.group(0)
        return PLACEHOLDERS[name]

    return re.sub(r"<([a-z0-9-]+)>", sub, text)


def check_shape_limits(value: Any, shape: Any, path: str, err: Callable[[str], None]) -> None:
    """What ParamValidator leaves out: enums, maxima and patterns of the model."""
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                check_shape_limits(v, shape.members[k], f"{path}.{k}" if path else k, err)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            err(f"{path}: {len(value)} items, at most {meta['max']}")
        for i, v in enumerate(value):
            check_shape_limits(v, shape.member, f"{path}[{i}]", err)
    elif shape.type_name == "map" and isinstance(value, dict):
        for k, v in value.items():
            check_shape_limits(v, shape.value, f"{path}.{k}", err)
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            err(f"{path}: {value!r} is not one of {shape.enum}")
        if "max" in meta and len(value) > meta["max"]:
            err(f"{path}: {len(value)} characters, at most {meta['max']}")
        if "pattern" in meta:
            try:
                ok = re.fullmatch(meta["pattern"], value) is not None
            except re.error:
                ok = True  # a Java-only regex construct: not checked here
            if not ok:
                err(f"{path}: {value!r} does not match {meta['pattern']}")
    elif shape.type_name in ("integer", "long", "double", "float") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            err(f"{path}: {value} is above {meta['max']}")


def check_task_definition(where: str, td: dict[str, Any], err: Callable[[str], None]) -> None:
    if "FARGATE" in (td.get("requiresCompatibilities") or []):
        if td.get("networkMode") != "awsvpc":
            err(f"{where}: Fargate needs networkMode awsvpc")
        try:
            cpu, memory = int(td.get("cpu", "0")), int(td.get("memory", "0"))
        except ValueError:
            err(f"{where}: cpu and memory must be numbers of units / MiB")
            cpu, memory = 0, 0
        if memory not in FARGATE_MEMORY.get(cpu, []):
            err(f"{where}: cpu {td.get('cpu')} with memory {td.get('memory')} is not a Fargate task size")
    names = {c.get("name") for c in td.get("containerDefinitions") or []}
    volumes = {v.get("name") for v in td.get("volumes") or []}
    for c in td.get("containerDefinitions") or []:
        cw = f"{where} container {c.get('name')}"
        if not ECR_IMAGE.match(c.get("image", "")):
            err(f"{cw}: image {c.get('image')!r} is not <account>.dkr.ecr.<region>.amazonaws.com/fashion-recsys:<tag>")
        for s in c.get("secrets") or []:
            if not SECRET_ARN.match(s.get("valueFrom", "")):
                err(f"{cw}: secret {s.get('name')} is not a Secrets Manager ARN: {s.get('valueFrom')!r}")
        for e in c.get("environment") or []:
            if e.get("value", "") == "":
                err(f"{cw}: environment {e.get('name')} is empty (leave it out)")
        logs = c.get("logConfiguration") or {}
        if logs.get("logDriver") != "awslogs" or not {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logs.get("options") or {}):
            err(f"{cw}: logs need the awslogs driver with group, region and stream prefix")
        for d in c.get("dependsOn") or []:
            if d.get("containerName") not in names:
                err(f"{cw}: dependsOn {d.get('containerName')}, no container of the task")
        for m in c.get("mountPoints") or []:
            if m.get("sourceVolume") not in volumes:
                err(f"{cw}: mountPoint {m.get('sourceVolume')} names no volume of the task")
        if c.get("readonlyRootFilesystem") and not any(m.get("containerPath") == "/tmp" for m in c.get("mountPoints") or []):
            err(f"{cw}: a read-only root filesystem needs a /tmp volume (tsx caches its transforms there)")


def run_aws(args: argparse.Namespace) -> int:
    import botocore.session
    from botocore.validate import ParamValidator

    errors: list[str] = []
    err = errors.append
    session = botocore.session.get_session()
    files = sorted(Path(args.dir).glob("*.json"))
    if not files:
        err(f"{args.dir}: no JSON files")
    loaded: dict[str, dict[str, Any]] = {}
    for path in files:
        where = path.name
        kind = next((v for k, v in AWS_FILES.items() if path.name.endswith(k)), None)
        if kind is None:
            err(f"{where}: unknown kind of file (name it *{' or *'.join(AWS_FILES)})")
            continue
        try:
            params = json.loads(fill_placeholders(path.read_text(encoding="utf-8"), where, err))
        except json.JSONDecodeError as e:
            err(f"{where}: not JSON: {e}")
            continue
        service, operation = kind
        shape = session.get_service_model(service).operation_model(operation).input_shape
        report_ = ParamValidator().validate(params, shape)
        if report_.has_errors():
            for line in report_.generate_report().splitlines():
                if line.strip() and not line.startswith("Parameter validation failed"):
                    err(f"{where} ({service} {operation}): {line.strip()}")
        check_shape_limits(params, shape, "", lambda m, w=where, o=f"{service} {operation}": err(f"{w} ({o}): {m}"))
        if operation == "RegisterTaskDefinition":
            check_task_definition(where, params, err)
        loaded[path.name] = params

    # Cross-file: services run registered families, their load balancer names a container port.
    families = {p["family"]: p for n, p in loaded.items() if n.endswith("-task-definition.json") and "family" in p}
    for name, p in loaded.items():
        if name.endswith("-service.json"):
            td = families.get(str(p.get("taskDefinition", "")).split(":")[0])
            if td is None:
                err(f"{name}: taskDefinition {p.get('taskDefinition')!r} is no family of the task definitions here")
                continue
            for lb in p.get("loadBalancers") or []:
                ports = {(c.get("name"), m.get("containerPort")) for c in td["containerDefinitions"] for m in c.get("portMappings") or []}
                if (lb.get("containerName"), lb.get("containerPort")) not in ports:
                    err(f"{name}: load balancer container {lb.get('containerName')}:{lb.get('containerPort')} is not mapped by {td['family']}")
        if name.endswith("-schedule-targets.json"):
            for t in p.get("Targets") or []:
                arn = (t.get("EcsParameters") or {}).get("TaskDefinitionArn", "")
                if arn.rsplit("/", 1)[-1].split(":")[0] not in families:
                    err(f"{name}: target {t.get('Id')} runs {arn!r}, no family of the task definitions here")
    return report(errors, f"{len(loaded)} AWS inputs valid against botocore's service models")


# ---------------------------------------------------------------- main


def report(errors: list[str], ok: str) -> int:
    for e in errors:
        print(f"ERROR {e}")
    if errors:
        print(f"{len(errors)} problem(s)")
        return 1
    print(f"OK {ok}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    k8s = sub.add_parser("k8s")
    k8s.add_argument("file")
    k8s.add_argument("--kube-version", action="append", required=True)
    k8s.add_argument("--external-secret", action="append")
    aws = sub.add_parser("aws")
    aws.add_argument("dir")
    to_json = sub.add_parser("yaml")
    to_json.add_argument("file")
    args = parser.parse_args()
    if args.command == "k8s":
        return run_k8s(args)
    if args.command == "aws":
        return run_aws(args)
    json.dump(load_yaml_docs(args.file), sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
