"""Offline validation of scanstream's Kubernetes and Strimzi manifests (run by tools/validate-manifests).

Every overlay of k8s/overlays is built with kustomize, and every document it yields is checked:

* built-in kinds (Deployment, Service, NetworkPolicy, ...) against the Kubernetes OpenAPI schemas
  bundled in the kubernetes-validate package, strictly (an unknown field fails), for every
  Kubernetes version in KUBERNETES_VERSIONS;
* KEDA and Prometheus Operator resources against the openAPIV3Schema of their CRDs (fetched from
  the Go module proxy by the shell script), made strict the way the API server's pruning would
  make a misspelt field disappear: an object with declared properties admits no others;
* Strimzi resources against Strimzi's own model (tools/strimzi-check, io.strimzi:api from Maven
  Central);
* any other kind is an error: a manifest nobody checks is not let through;
* RBAC is least privilege, as reviewed: no cluster-wide roles, no wildcards, every Role exactly
  as listed in ROLES, bindings only to ServiceAccounts the manifests declare, and a service
  account token mounted only into pods whose account holds a Role (the scanner, for engine Jobs).

`--self-test` proves the checks bite: it copies the tree, breaks it in known ways, and expects each
break to be reported with the field it names. Exit status: 0 valid, 1 problems found, 2 could not run.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def kustomize_build(kustomize: str, directory: Path) -> str:
    run = subprocess.run(
        [kustomize, "build", str(directory)], capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise BuildError(f"kustomize build {directory} failed: {run.stderr.strip()}")
    return run.stdout


class BuildError(Exception):
    pass


def strict(schema):
    """A copy of a CRD schema in which objects with declared properties admit no others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema of every served version of every CRD file."""
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema and version.get("served", True):
                    body = strict(schema)
                    # apiVersion/kind/metadata are checked by the API server, not the CRD.
                    body.setdefault("properties", {})
                    for key in ("apiVersion", "kind", "metadata"):
                        body["properties"].setdefault(key, {})
                    schemas[(f"{group}/{version['name']}", kind)] = body
    return schemas


# Every Role the manifests may hold, with exactly these rules: (API group, resource) -> verbs.
ROLES = {
    # The scanner runs command engines as Jobs (services/scanner/src/command/kubernetes.rs).
    "scanstream-scanner-engines": {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
    },
}


def check_rbac(label: str, docs: list[dict]) -> list[Problem]:
    problems: list[Problem] = []
    accounts = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ServiceAccount"}
    bound: set[str] = set()
    for doc in docs:
        kind = doc.get("kind")
        where = f"{label}: {name_of(doc)}"
        if kind in ("ClusterRole", "ClusterRoleBinding"):
            problems.append(Problem(where, "cluster-wide RBAC: scanstream needs none"))
        elif kind == "Role":
            granted: dict[tuple[str, str], set[str]] = {}
            for rule in doc.get("rules") or []:
                values = [*rule.get("apiGroups", []), *rule.get("resources", []), *rule.get("verbs", [])]
                if "*" in values:
                    problems.append(Problem(where, f"a wildcard in {rule}"))
                if rule.get("resourceNames") or rule.get("nonResourceURLs"):
                    problems.append(Problem(where, f"unreviewed rule shape {rule}"))
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        granted.setdefault((group, resource), set()).update(rule.get("verbs", []))
            expected = ROLES.get(doc["metadata"]["name"])
            if expected is None:
                problems.append(Problem(where, "a Role not listed in ROLES (tools/validate_manifests.py)"))
            elif granted != expected:
                extra = {k: sorted(v - expected.get(k, set())) for k, v in granted.items() if v - expected.get(k, set())}
                missing = {k: sorted(v - granted.get(k, set())) for k, v in expected.items() if v - granted.get(k, set())}
                problems.append(Problem(where, f"grants more than reviewed {extra} or less {missing}"))
        elif kind == "RoleBinding":
            for subject in doc.get("subjects") or []:
                if subject.get("kind") != "ServiceAccount" or subject.get("name") not in accounts:
                    problems.append(Problem(where, f"binds {subject}, not a ServiceAccount of these manifests"))
                else:
                    bound.add(subject["name"])
    for doc in docs:
        spec = (((doc.get("spec") or {}).get("template") or {}).get("spec")) or {}
        if doc.get("kind") not in ("Deployment", "StatefulSet", "Job") or not spec:
            continue
        account = spec.get("serviceAccountName", "default")
        default = (accounts.get(account) or {}).get("automountServiceAccountToken", True)
        if spec.get("automountServiceAccountToken", default) and account not in bound:
            problems.append(
                Problem(f"{label}: {name_of(doc)}", f"mounts the token of {account!r}, which holds no Role")
            )
    return problems


def name_of(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def check_documents(
    label: str, text: str, crds: dict, strimzi_docs: list[tuple[str, dict]]
) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    checked = 0
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        where = f"{label}: {name_of(doc)}"
        api_version = str(doc.get("apiVersion", ""))
        kind = doc.get("kind", "")
        if "strimzi.io/" in api_version:
            strimzi_docs.append((label, doc))
            continue
        checked += 1
        if (api_version, kind) in crds:
            validator = jsonschema.Draft7Validator(crds[(api_version, kind)])
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                path = ".".join(str(p) for p in error.path) or "(root)"
                problems.append(Problem(where, f"{path}: {error.message}"))
            continue
        known = False
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                known = True
            except kubernetes_validate.SchemaNotFoundError:
                break
            except kubernetes_validate.ValidationError as error:
                known = True
                path = ".".join(str(p) for p in error.path) or "(root)"
                problems.append(Problem(where, f"Kubernetes {version}: {path}: {error.message}"))
                break
            except kubernetes_validate.InvalidSchemaError as error:
                known = True
                problems.append(Problem(where, f"Kubernetes {version}: {error}"))
                break
        if not known:
            problems.append(
                Problem(where, f"no schema for {api_version} {kind}: add its CRD to the validation")
            )
    return problems, checked


def check_strimzi(classpath: str, docs: list[tuple[str, dict]], workdir: Path) -> list[Problem]:
    if not docs:
        return []
    # One file per overlay, so the checker's "FILE: ..." lines name the overlay.
    by_label: dict[str, list[dict]] = {}
    for label, doc in docs:
        by_label.setdefault(label, []).append(doc)
    labels = {}
    for index, (label, group) in enumerate(by_label.items()):
        path = workdir / f"{index}.yaml"
        path.write_text(yaml.safe_dump_all(group, sort_keys=False))
        labels[str(path)] = label
    files = list(labels)
    run = subprocess.run(
        [
            "java",
            "--class-path",
            classpath,
            str(ROOT / "tools/strimzi-check/StrimziCheck.java"),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode not in (0, 1):
        raise BuildError(f"the Strimzi model check could not run: {run.stderr.strip()}")
    problems = []
    for line in run.stdout.splitlines():
        if line.startswith("strimzi model"):
            print(f"  {line}")
        elif line.strip():
            file, _, rest = line.partition(": ")
            problems.append(Problem(labels.get(file, file), rest))
    return problems


def validate_tree(root: Path, args) -> list[Problem]:
    crds = load_crd_schemas(Path(args.crds))
    classpath = Path(args.strimzi_classpath).read_text().strip()
    problems: list[Problem] = []
    strimzi_docs: list[tuple[str, dict]] = []
    overlays = sorted(p for p in (root / "k8s/overlays").iterdir() if p.is_dir())
    for overlay in overlays:
        label = f"k8s/overlays/{overlay.name}"
        try:
            text = kustomize_build(args.kustomize, overlay)
        except BuildError as error:
            problems.append(Problem(label, str(error)))
            continue
        found, checked = check_documents(label, text, crds, strimzi_docs)
        found += check_rbac(label, [d for d in yaml.safe_load_all(text) if d])
        print(f"  {label}: {checked} Kubernetes resources checked, {len(found)} problems")
        problems += found
    with tempfile.TemporaryDirectory() as work:
        problems += check_strimzi(classpath, strimzi_docs, Path(work))
    return problems


# Each break: (description, file, old text, new text, text the report must contain).
BREAKS = [
    (
        "a misspelt container field",
        "k8s/base/ingest.yaml",
        "          readinessProbe:\n",
        "          readynessProbe:\n",
        "readynessProbe",
    ),
    (
        "a wrong type in a Service",
        "k8s/base/aggregator.yaml",
        "      port: 8080\n      targetPort: http\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: scanstream-aggregator\n",
        "      port: eighty\n      targetPort: http\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: scanstream-aggregator\n",
        "eighty",
    ),
    (
        "a misspelt Strimzi listener field",
        "strimzi/kafka.yaml",
        "        authentication:\n          type: scram-sha-512\n",
        "        authentication:\n          typo: scram-sha-512\n",
        "KafkaListenerAuthentication",
    ),
    (
        "an unknown Strimzi listener type",
        "strimzi/kafka.yaml",
        "        type: internal\n",
        "        type: intranet\n",
        "listeners[0].type",
    ),
    (
        "a misspelt KafkaUser ACL field",
        "strimzi/users.yaml",
        "          patternType: prefix\n",
        "          paternType: prefix\n",
        "paternType",
    ),
    (
        "a misspelt KEDA trigger field",
        "k8s/base/scanner.yaml",
        "  minReplicaCount: 1\n",
        "  minReplicaCnt: 1\n",
        "minReplicaCnt",
    ),
    (
        "a misspelt PrometheusRule field",
        "k8s/components/monitoring/alerts.yaml",
        "          for: 15m\n",
        "          four: 15m\n",
        "four",
    ),
    (
        "a Role that also reads Secrets",
        "k8s/base/engines.yaml",
        "    resources: [pods/log]\n",
        "    resources: [pods/log, secrets]\n",
        "scanstream-scanner-engines",
    ),
    (
        "a wildcard verb",
        "k8s/base/engines.yaml",
        "    verbs: [create, get, list, watch, delete]\n",
        "    verbs: [\"*\"]\n",
        "wildcard",
    ),
    (
        "a token mounted into a role without a Role",
        "k8s/base/ingest.yaml",
        "      automountServiceAccountToken: false\n",
        "      automountServiceAccountToken: true\n",
        "holds no Role",
    ),
    (
        "a patch of a path that does not exist",
        "k8s/overlays/kind/kustomization.yaml",
        "        path: /spec/replicas\n        value: 1\n",
        "        path: /spec/replica/count\n        value: 1\n",
        "kustomize build",
    ),
]


def self_test(args) -> int:
    failures = 0
    for description, file, old, new, expect in BREAKS:
        with tempfile.TemporaryDirectory() as work:
            tree = Path(work) / "tree"
            for part in ("k8s", "strimzi"):
                shutil.copytree(ROOT / part, tree / part)
            target = tree / file
            text = target.read_text()
            if old not in text:
                print(f"self-test: {description}: {old!r} is not in {file} any more")
                failures += 1
                continue
            target.write_text(text.replace(old, new, 1))
            with open(os.devnull, "w") as quiet:
                saved = sys.stdout
                sys.stdout = quiet
                try:
                    problems = validate_tree(tree, args)
                finally:
                    sys.stdout = saved
            hits = [p for p in problems if expect in str(p)]
            if hits:
                print(f"self-test: caught {description}: {hits[0]}")
            else:
                print(f"self-test: MISSED {description} ({file}); reported: {problems or 'nothing'}")
                failures += 1
    print(f"self-test: {len(BREAKS) - failures} of {len(BREAKS)} deliberate breaks caught")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kustomize", required=True, help="the kustomize binary")
    parser.add_argument("--crds", required=True, help="folder of CRD YAML files (KEDA, Prometheus Operator)")
    parser.add_argument("--strimzi-classpath", required=True, help="file holding the Strimzi model's class path")
    parser.add_argument("--self-test", action="store_true", help="break the manifests on purpose and expect failures")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args)
    problems = validate_tree(ROOT, args)
    for problem in problems:
        print(f"  INVALID {problem}")
    print(f"manifests: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as error:
        print(f"validate-manifests: {error}", file=sys.stderr)
        sys.exit(2)
