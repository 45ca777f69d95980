"""`rlsci launch`: run `rlsci train` on a Ray cluster as a Ray job (rlsci/launch.py).

    rlsci launch configs/clusters/aws-8xh100.yaml configs/wildsci/qwen2.5-7b.yaml   # `ray up` if needed
    rlsci launch --address http://HEAD:8265 configs/demo.yaml trainer.total_steps=2  # a running cluster
    rlsci launch --address http://HEAD:8265 configs/demo.yaml --dry-run              # print the job only
    rlsci launch --status JOB --address http://HEAD:8265        # or --status JOB CLUSTER.yaml
    rlsci launch --logs JOB --address http://HEAD:8265          # follow a job again after Ctrl-C
    rlsci launch --stop JOB --address http://HEAD:8265          # SIGTERM: the trainer saves a checkpoint

Run it from the repository root: that directory travels with the job (configs/clusters/runtime_env.yaml),
so the config and data files under it reach the cluster. The config is validated here first; a bad key
or a file that would be missing on the cluster fails before any cluster starts or any job is sent.
Ctrl-C while the logs stream detaches; the job keeps running.
Exit status: 0 the job succeeded (or --status/--stop/--dry-run done), 1 it failed or was stopped, 2
nothing sent (a bad config, a file missing on the cluster, no cluster at the address, auth), 130
detached by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

HELP = "run `rlsci train` on a Ray cluster (ray up, SLURM, KubeRay): submit, stream logs, status, stop"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="CLUSTER.yaml CONFIG.yaml [a.b=c ...]",
                   help="a `ray up` cluster YAML (left out with --address), the training config, dotted overrides")
    p.add_argument("--address", help="the dashboard of a running cluster, http://HOST:8265: no `ray up`")
    p.add_argument("--runtime-env", default=None,
                   help="Ray runtime env YAML (default configs/clusters/runtime_env.yaml of this checkout)")
    p.add_argument("--python", default=None,
                   help="the Python that runs the job on the cluster (default: this one for a head on this "
                        "machine, else `python`)")
    p.add_argument("--run-root", default=None,
                   help="where a relative run.dir goes on the cluster (default: this directory for a head on this "
                        "machine, else ~/rlsci on the head node)")
    p.add_argument("--no-wait", action="store_true", help="submit and return; do not stream the logs")
    p.add_argument("--dry-run", action="store_true", help="print the job (entrypoint, runtime env); send nothing")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--status", metavar="JOB", help="print a job's status and run directory")
    action.add_argument("--logs", metavar="JOB", help="stream a job's logs until it ends")
    action.add_argument("--stop", metavar="JOB", help="stop a job (SIGTERM: the trainer saves a checkpoint)")
    p.set_defaults(overrides=[])


def run(args: argparse.Namespace) -> int:
    from rlsci.config import ConfigError
    from rlsci.launch import LaunchError

    files = [a for a in args.paths if "=" not in a]
    overrides = [a for a in args.paths if "=" in a] + list(args.overrides)
    try:
        if args.status or args.logs or args.stop:
            return _manage(args, files)
        return _launch(args, files, overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print("rlsci launch: nothing was sent", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"rlsci launch: {exc}", file=sys.stderr)
        return 2


def _launch(args: argparse.Namespace, files: list[str], overrides: list[str]) -> int:
    from rlsci import launch

    expected = 1 if args.address else 2
    if len(files) != expected:
        raise launch.LaunchError(
            "usage: rlsci launch CLUSTER.yaml CONFIG.yaml [a.b=c ...]  or  rlsci launch --address "
            f"http://HOST:8265 CONFIG.yaml [a.b=c ...]; got {len(files)} file(s): {files}")
    cluster_yaml = None if args.address else files[0]
    config = files[-1]
    if cluster_yaml:
        launch.read_cluster_yaml(cluster_yaml)  # a training config given as the cluster: say so now
    local_head = bool(args.address) and launch.is_local_address(args.address)
    plan = launch.plan_job(config, overrides, runtime_env_path=args.runtime_env or launch.DEFAULT_RUNTIME_ENV,
                           local_head=local_head, python=args.python, run_root=args.run_root)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        import yaml

        print(f"job id: {plan.submission_id}\nentrypoint: {plan.entrypoint}\nrun directory: {plan.run_dir}\n"
              f"runtime env:\n{yaml.safe_dump(plan.runtime_env, sort_keys=False)}", end="")
        if cluster_yaml:
            print(f"cluster: `ray up -y {cluster_yaml}` unless its head runs; the dashboard through "
                  f"`ray dashboard {cluster_yaml}`")
        return 0
    if cluster_yaml:
        launch.ensure_cluster(cluster_yaml, log=lambda m: print(m, file=sys.stderr))
        with launch.dashboard_tunnel(cluster_yaml) as address:
            return _submit_and_follow(args, plan, address, cluster_yaml)
    return _submit_and_follow(args, plan, args.address, None)


def _submit_and_follow(args: argparse.Namespace, plan, address: str, cluster_yaml: str | None) -> int:
    from rlsci import launch

    client = launch.job_client(address)
    job_id = launch.submit(client, plan)
    where = f"--address {address}" if cluster_yaml is None else cluster_yaml
    dashboard = address if cluster_yaml is None else f"{address} (while this runs; later: ray dashboard {cluster_yaml})"
    print(f"job id: {job_id}\ndashboard: {dashboard}\nrun directory: {plan.run_dir}"
          + ("" if launch.is_local_address(address) and cluster_yaml is None else " (on the head node)"), flush=True)
    if cluster_yaml:
        print(f"  copy it back: ray rsync-down {cluster_yaml} {plan.run_dir} runs/{plan.run_dir.rsplit('/', 1)[-1]}")
    if args.no_wait:
        print(f"submitted; follow it: rlsci launch --logs {job_id} {where}")
        return 0
    try:
        status, logs = launch.follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\ndetached: job {job_id} keeps running on the cluster.\n"
              f"  rlsci launch --status {job_id} {where}\n  rlsci launch --logs {job_id} {where}\n"
              f"  rlsci launch --stop {job_id} {where}", file=sys.stderr)
        return 130
    print(f"job {job_id}: {status}\nrun directory: {plan.run_dir}")
    if status != "SUCCEEDED":
        for hint in launch.missing_modules(logs):
            print(f"rlsci launch: {hint}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def _manage(args: argparse.Namespace, files: list[str]) -> int:
    from rlsci import launch

    job_id = args.status or args.logs or args.stop
    if bool(args.address) == bool(files) or len(files) > 1:
        raise launch.LaunchError(f"which cluster? give --address http://HOST:8265 or one CLUSTER.yaml, not both "
                                 f"(got --address {args.address!r} and {files})")
    if files:
        launch.read_cluster_yaml(files[0])
        with launch.dashboard_tunnel(files[0]) as address:
            return _manage_at(args, job_id, address)
    return _manage_at(args, job_id, args.address)


def _manage_at(args: argparse.Namespace, job_id: str, address: str) -> int:
    from rlsci import launch

    client = launch.job_client(address)
    info = launch.job_info(client, job_id)
    if args.stop:
        if info.status.value in launch.TERMINAL:
            print(f"job {job_id} has already ended: {info.status.value}")
            return 0
        client.stop_job(job_id)
        print(f"stopping job {job_id}: the trainer got SIGTERM, finishes its step and saves a checkpoint "
              f"(the same config with trainer.resume=auto resumes it)")
        return 0
    if args.logs:
        try:
            status, _ = launch.follow(client, job_id)
        except KeyboardInterrupt:
            print(f"\ndetached: job {job_id} keeps running", file=sys.stderr)
            return 130
        print(f"job {job_id}: {status}")
        return 0 if status == "SUCCEEDED" else 1
    print(launch.describe(info))
    return 0
