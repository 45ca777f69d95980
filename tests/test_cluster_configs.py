"""Every file under configs/clusters/ checked by the tool that will read it: the `ray up` YAMLs by Ray's
own schema and validator (ray/autoscaler/ray-schema.json, as `ray up` applies it), the SLURM script by
bash, the KubeRay RayJob for the fields the operator requires, the runtime env by Ray's RuntimeEnv.
Nothing here reaches a cloud.

    pytest tests/test_cluster_configs.py
"""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from rlsci.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "configs" / "clusters"
RAY_UP = sorted(p for p in CLUSTERS.glob("*.yaml")
                if any("provider" in (doc or {}) for doc in yaml.safe_load_all(p.read_text())))


def test_the_three_routes_have_their_files_and_each_is_checked_here():
    names = {p.name for p in CLUSTERS.iterdir()}
    # tests/test_configs.py leaves configs/clusters/ to this module: a new file must be checked below
    assert names == {"slurm.sbatch", "kuberay-rayjob.yaml", "runtime_env.yaml", *(p.name for p in RAY_UP)}
    providers = {yaml.safe_load(p.read_text())["provider"]["type"] for p in RAY_UP}
    assert {"aws", "local"} <= providers and len(RAY_UP) >= 3


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_yaml_passes_rays_validator(path):
    """What `ray up` does before it launches anything: fill the provider's defaults, then validate."""
    validate_config(prepare_config(yaml.safe_load(path.read_text())))


def test_rays_validator_refuses_a_misspelled_field():
    """The check above can fail: the schema forbids unknown top-level fields."""
    cluster = yaml.safe_load((CLUSTERS / "aws-8xh100.yaml").read_text())
    cluster["setup_comands"] = cluster.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        validate_config(prepare_config(copy.deepcopy(cluster)))


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_yaml_starts_ray_with_token_auth_and_ships_the_token(path):
    """The client (`rlsci launch`) and every node must share one token: the nodes start in token mode
    and get ~/.ray/auth_token from the launching machine; the checkout they install from is synced."""
    cluster = yaml.safe_load(path.read_text())
    head = " ".join(cluster["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head
    for command in cluster["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in command
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert cluster["file_mounts"]["~/rlsci"] == "."
    assert any("pip install -e ~/rlsci" in c for c in cluster["setup_commands"])


def test_slurm_script_parses_and_refuses_a_bad_config_before_starting_ray():
    script = CLUSTERS / "slurm.sbatch"
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "ray\" start --head" in text.replace("$RAY", "ray")
    # outside SLURM the script stops at its config check, before scontrol or `ray start`
    env = {**os.environ, "RLSCI_VENV": str(Path(sys.executable).parents[1]), "RAY_AUTH_MODE": "disabled"}
    bad = subprocess.run(["bash", str(script), "configs/demo.yaml", "trainer.totl_steps=2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "unknown key `trainer.totl_steps`" in bad.stderr and "no Ray node was started" in bad.stderr
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage: sbatch" in usage.stderr


def test_rayjob_has_the_fields_kuberay_requires_and_a_config_that_loads():
    docs = list(yaml.safe_load_all((CLUSTERS / "kuberay-rayjob.yaml").read_text()))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(c["name"] and c["image"] for c in head["template"]["spec"]["containers"])
    for group in cluster["workerGroupSpecs"]:  # groupName, min/maxReplicas, rayStartParams, template: required
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert container["name"] and container["image"] and container["resources"]["limits"]["nvidia.com/gpu"]
    assert cluster["rayVersion"] == __import__("ray").__version__  # the image's Ray is the one tested here
    # the runtime env is one Ray accepts, and the entrypoint's config and overrides load
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))
    argv = shlex.split(spec["entrypoint"].split("&&", 1)[1])
    assert argv[:4] == ["python", "-m", "rlsci.cli", "train"]
    cfg = load_config(ROOT / argv[4], argv[5:])
    assert cfg.run.dir.startswith("/runs/")  # on the volume every pod mounts
    claims = {v["persistentVolumeClaim"]["claimName"] for g in [head, *cluster["workerGroupSpecs"]]
              for v in g["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert claims == {pvc["metadata"]["name"]} and "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_runtime_env_is_one_ray_accepts():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((CLUSTERS / "runtime_env.yaml").read_text())
    RuntimeEnv(**env)
    assert env["working_dir"] == "." and ".git/" in env["excludes"]
    assert env["env_vars"]["PYTHONUNBUFFERED"] == "1"
