"""`rlsci launch` (rlsci/launch.py): what is refused before anything is sent, what travels with the job,
and real Ray jobs on a head started with `ray start --head` on 127.0.0.1 (the `ray_head` fixture).

    pytest tests/rlsci/test_launch.py -m "not slow"     # seconds: nothing starts
    pytest tests/rlsci/test_launch.py                   # + two Ray heads and a 2-step training job (~minutes)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlsci.cli import main
from rlsci.data.synthetic import split_overrides, write_splits
from rlsci.launch import LaunchError, missing_modules, plan_job
from rlsci.models import init_tiny_model

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "demo.yaml"
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A micro model and synthetic questions for 2-step runs (as in test_trainer.py)."""
    root = tmp_path_factory.mktemp("assets")
    init_tiny_model(root / "model", size="micro", seed=0)
    write_splits(root / "data", seed=0, n_train=64, n_val=8, n_ood=8)
    return root


def overrides(assets: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"run.dir={run_dir}", f"model.path={assets / 'model'}", "model.init=none",
            *split_overrides(assets / "data"),
            "trainer.prompts_per_step=4", "rollout.n=4", "trainer.total_steps=2", "trainer.eval_every=0",
            "trainer.save_every=0", "trainer.loggers=[jsonl]", "trainer.export_hf=false", *extra]


def launch(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rlsci.cli", "launch", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def job_status(address: str, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address).get_job_status(job_id).value


# ----------------------------------------------------------------------------- refused before anything is sent


def test_unknown_key_is_refused_before_anything_is_sent(capsys, monkeypatch):
    """A listening socket stands in for the dashboard: the refusal must come before any connection."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        address = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert main(["launch", "--address", address, str(DEMO), "trainer.totl_steps=2"]) == 2
        with pytest.raises(BlockingIOError):  # nobody connected
            listener.accept()
    err = capsys.readouterr().err
    assert "unknown key `trainer.totl_steps`; did you mean `trainer.total_steps`?" in err
    assert "nothing was sent" in err
    # with a cluster YAML: refused before `ray get-head-ip` / `ray up` would run
    started = time.monotonic()
    assert main(["launch", str(ROOT / "configs/clusters/onprem.yaml"), str(DEMO), "trainer.totl_steps=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key `trainer.totl_steps`" in err and "ray up" not in err
    assert time.monotonic() - started < 30


def test_a_training_config_given_as_the_cluster_is_named(capsys):
    assert main(["launch", str(DEMO), str(DEMO)]) == 2
    assert "not a `ray up` cluster YAML (no provider:)" in capsys.readouterr().err


def test_files_that_would_not_reach_the_cluster_are_refused(tmp_path):
    """Relative paths travel from inside the working directory unless Ray's upload leaves them out
    (the repository's .gitignore, a nested .gitignore, the runtime env's excludes)."""
    repo = tmp_path / "repo"
    (repo / "data" / "private").mkdir(parents=True)
    (repo / "runs").mkdir()
    (repo / ".gitignore").write_text("runs/\n")
    (repo / "data" / ".gitignore").write_text("private/\n")
    for name in ("data/train.jsonl", "data/private/val.jsonl", "runs/ood.jsonl", "data/big.jsonl"):
        (repo / name).write_text("{}\n")
    (tmp_path / "outside.jsonl").write_text("{}\n")
    (repo / "train.yaml").write_text(f"defaults: [{DEMO}]\n")
    env = repo / "env.yaml"
    env.write_text(yaml.safe_dump({"working_dir": str(repo), "excludes": ["data/big.jsonl"]}))

    def plan(*extra: str, local_head: bool = False):
        return plan_job(repo / "train.yaml", ["data.synthetic.dir=''", "model.path=org/model", *extra],
                        runtime_env_path=env, local_head=local_head)

    travels = plan("data.train=[data/train.jsonl]", "data.val.path=data/train.jsonl", "data.ood=[]")
    assert travels.config == "train.yaml" and travels.runtime_env["working_dir"] == str(repo)
    with pytest.raises(LaunchError) as refused:
        plan("data.train=[data/train.jsonl, ../outside.jsonl, data/missing.jsonl, data/big.jsonl]",
             "data.val.path=data/private/val.jsonl", "data.ood=[{name: samples, path: runs/ood.jsonl}]")
    problems = str(refused.value).splitlines()[1:]
    assert len(problems) == 5, refused.value
    assert "data.train[1]: ../outside.jsonl is outside the working directory" in problems[0]
    assert "data.train[2]: no such file 'data/missing.jsonl'" in problems[1]
    assert "data.train[3]: data/big.jsonl is left out of the upload" in problems[2]   # excludes
    assert "data.val.path: data/private/val.jsonl is left out of the upload" in problems[3]  # nested .gitignore
    assert "data.ood[0].path: runs/ood.jsonl is left out of the upload" in problems[4]  # the root .gitignore
    # an absolute path is not uploaded: a note for a remote cluster, checked here for a head on this machine
    outside = str(tmp_path / "outside.jsonl")
    remote = plan(f"data.train=[{outside}]", "data.val.path=data/train.jsonl", "data.ood=[]")
    assert any("data.train[0]" in n and "read at that path on the cluster" in n for n in remote.notes)
    with pytest.raises(LaunchError, match="no such file"):
        plan(f"data.train=[{tmp_path / 'gone.jsonl'}]", "data.val.path=data/train.jsonl", "data.ood=[]",
             local_head=True)


def test_a_relative_run_dir_lands_under_the_run_root_not_in_the_jobs_copy(tmp_path):
    """The entrypoint as the cluster's shell runs it: ~ expands on the head, every other word stays whole."""
    remote = plan_job(DEMO, ["run.name=my run"], local_head=False, now=0)
    assert remote.submission_id == "rlsci-my-run-19700101-000000"
    assert remote.run_dir == "~/rlsci/runs/demo" and remote.entrypoint.startswith("python -m rlsci.cli train ")
    argv = subprocess.run(["bash", "-c", remote.entrypoint.replace("python -m rlsci.cli", "printf '%s\\n'", 1)],
                          env={"HOME": "/home/ray"}, capture_output=True, text=True).stdout.splitlines()
    assert argv == ["train", "configs/demo.yaml", "run.name=my run", "run.dir=/home/ray/rlsci/runs/demo"]
    local = plan_job(DEMO, ["trainer.total_steps=2"], local_head=True)
    assert local.run_dir == str(ROOT / "runs" / "demo") and local.entrypoint.startswith(sys.executable)
    rooted = plan_job(DEMO, [f"run.dir={tmp_path}/x"], local_head=False, run_root="/shared")
    assert rooted.run_dir == f"{tmp_path}/x" and rooted.entrypoint.count("run.dir=") == 1  # left as given
    assert plan_job(DEMO, [], local_head=False, run_root="/shared").run_dir == "/shared/runs/demo"


def test_dry_run_prints_the_job_and_sends_nothing(capsys):
    assert main(["launch", "--address", "http://10.0.0.1:8265", str(DEMO), "trainer.total_steps=2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "entrypoint: python -m rlsci.cli train configs/demo.yaml trainer.total_steps=2" in out
    assert "run directory: ~/rlsci/runs/demo" in out and f"working_dir: {ROOT}" in out


def test_a_failed_job_names_the_extra_the_cluster_lacks():
    logs = "Traceback ...\nModuleNotFoundError: No module named 'wandb.sdk'\n... No module named 'vllm'\n"
    hints = missing_modules(logs)
    assert len(hints) == 2
    assert "lacks `wandb`" in hints[0] and "rlsci[tracking]" in hints[0]
    assert "lacks `vllm`" in hints[1] and "rlsci[gpu" in hints[1]
    assert missing_modules("Traceback: ValueError: bad") == []


def test_no_cluster_at_the_address_says_what_to_do(capsys, monkeypatch):
    from rlsci.reward_service import free_port

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert main(["launch", "--status", "rlsci-x", "--address", f"http://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "no Ray dashboard answers at http://127.0.0.1:" in err and "ray start --head" in err


# ----------------------------------------------------------------------------- real jobs on a real head


@pytest.mark.slow
def test_launch_runs_rlsci_train_on_a_running_head(assets, tmp_path, ray_head):
    """`rlsci launch --address` on a head started with `ray start --head`: the job succeeds, the run
    directory is written, --status reports it; a config with an unknown key creates no job."""
    from ray.job_submission import JobSubmissionClient

    run_dir = tmp_path / "run"
    job = launch("--address", ray_head, str(DEMO), *overrides(assets, run_dir))
    out, err = job.communicate(timeout=500)
    assert job.returncode == 0, out[-3000:] + err[-3000:]
    job_id = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("job id: "))
    assert job_id.startswith("rlsci-demo-")
    assert f"dashboard: {ray_head}" in out and f"run directory: {run_dir}" in out
    assert f"job {job_id}: SUCCEEDED" in out
    assert "step   1" in out  # the trainer's own lines streamed through
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert (run_dir / "config.yaml").is_file()

    status = launch("--status", job_id, "--address", ray_head)
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert f"job {job_id}: SUCCEEDED" in out and f"run directory: {run_dir}" in out

    refused = launch("--address", ray_head, str(DEMO), *overrides(assets, tmp_path / "bad", "trainer.totl_steps=2"))
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "unknown key `trainer.totl_steps`" in err
    assert [j.submission_id for j in JobSubmissionClient(ray_head).list_jobs()] == [job_id]
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_ctrl_c_detaches_and_stop_stops_the_job(assets, tmp_path, ray_head):
    """Ctrl-C while the logs stream leaves the job running; --stop ends it (SIGTERM)."""
    job = launch("--address", ray_head, str(DEMO), *overrides(assets, tmp_path / "run", "trainer.total_steps=50"))
    job_id = ""
    for line in job.stdout:  # the id is printed, flushed, before the logs stream
        if line.startswith("job id: "):
            job_id = line.split(": ", 1)[1].strip()
            break
    assert job_id, job.stderr.read()
    deadline = time.monotonic() + 120
    while job_status(ray_head, job_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(3)  # inside the log stream now
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=60)
    assert job.returncode == 130, out[-2000:] + err[-2000:]
    assert f"detached: job {job_id} keeps running" in err and f"--stop {job_id}" in err
    assert job_status(ray_head, job_id) == "RUNNING"

    stop = launch("--stop", job_id, "--address", ray_head)
    out, err = stop.communicate(timeout=60)
    assert stop.returncode == 0 and f"stopping job {job_id}" in out, err
    deadline = time.monotonic() + 300
    while job_status(ray_head, job_id) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(2)
    assert job_status(ray_head, job_id) == "STOPPED"


def test_a_cluster_without_a_head_is_not_brought_up_while_its_file_mounts_are_missing(tmp_path, capsys):
    """The `ray up` route as far as it goes without machines: the real `ray get-head-ip` finds no head of
    an on-premises cluster, and a file_mounts source that is not here stops it before `ray up`."""
    cluster = yaml.safe_load((ROOT / "configs/clusters/onprem.yaml").read_text())
    cluster["cluster_name"] = f"rlsci-test-{os.getpid()}"
    cluster["file_mounts"]["~/.ray/auth_token"] = str(tmp_path / "no_token")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    try:
        assert main(["launch", str(path), str(DEMO), "trainer.total_steps=2"]) == 2
    finally:  # the local provider's state files, named after the cluster
        for suffix in ("lock", "state"):
            Path(f"/tmp/ray/cluster-{cluster['cluster_name']}.{suffix}").unlink(missing_ok=True)
    err = capsys.readouterr().err
    assert "file_mounts name local files that are not here" in err and "no_token" in err
    assert "ray get-auth-token --generate" in err and "ray up -y" not in err
