"""How weights travel from the learner to rollout engines, by placement (DESIGN.md, "Placement"):

- ``cpu``: in-memory tensors. The controller passes (name, tensor) pairs (once in Ray's object
  store for all workers); a vLLM engine hands them to its worker processes as one serialized
  blob (`serialize_tensors`) through ``collective_rpc``.
- ``split``: NCCL broadcast from learner rank 0 over a separate group (not the learner's own
  torch.distributed group): rank 0 = learner (`NcclWeightSender`), ranks 1.. = vLLM workers
  (`NcclWeightReceiver`), created at an explicit host:port with vLLM's StatelessProcessGroup and
  PyNcclCommunicator. The engines get an `NcclUpdate` (names, dtypes, shapes, in broadcast order)
  while the learner calls `send` with the same tensors in the same order.
- ``colocate``: CUDA IPC. Each learner rank exports handles of full tensors on its GPU
  (`ipc_update`); the controller merges them (`merge_ipc_updates`) and each vLLM worker opens
  the handles of its own GPU (found by UUID) with `open_ipc_handles`. The learner must keep the
  tensors alive until update_weights returned.

Every path delivers Hugging Face names; the engine loads them with vLLM's in-place reload.
"""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: str  # str(torch dtype), e.g. "torch.bfloat16"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NcclUpdate:
    """The tensors rank 0 of the weight-sync group broadcasts next, in this order."""

    tensors: tuple[TensorMeta, ...]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]


@dataclass(frozen=True)
class IpcUpdate:
    """CUDA IPC handles of full tensors, per physical GPU (UUID): pickled [(name, rebuild args)]."""

    names: tuple[str, ...]  # the tensor names (the same on every GPU)
    handles: dict[str, bytes]  # GPU UUID -> pickled list of (name, torch.multiprocessing rebuild args)


def dtype_from_str(name: str) -> torch.dtype:
    """"torch.bfloat16" or "bfloat16" -> torch.bfloat16."""
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r}")
    return dtype


def serialize_tensors(named: Iterable[tuple[str, Tensor]]) -> bytes:
    """(name, tensor) pairs -> bytes (torch.save of a list: tied tensors may share storage)."""
    buffer = io.BytesIO()
    torch.save([(name, tensor.detach().cpu()) for name, tensor in named], buffer)
    return buffer.getvalue()


def deserialize_tensors(blob: bytes) -> list[tuple[str, Tensor]]:
    return torch.load(io.BytesIO(blob), weights_only=True)


def gpu_uuid(device: torch.device) -> str:
    return str(torch.cuda.get_device_properties(device).uuid)


# --------------------------------------------------------------------------- NCCL (split placement)


def _nccl_group(host: str, port: int, rank: int, world_size: int, device: torch.device, timeout_s: int):
    from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size,
                                         store_timeout=timeout_s)
    return PyNcclCommunicator(group, device=device)


def _wait_for_broadcasts(comm, stream, timeout_s: float, who: str) -> None:
    """Wait until the broadcasts queued on `stream` finished, at most timeout_s seconds.

    NCCL collectives have no timeout of their own: a peer that never joins a broadcast (a receiver
    that failed, a sender that never started) leaves this process blocked for good, and a Ray actor
    blocked so queues every later call behind it. On timeout the communicator is aborted
    (ncclCommAbort), so it cannot be used again, and TimeoutError names what happened.
    """
    done = torch.cuda.Event()
    done.record(stream)
    deadline = time.monotonic() + timeout_s
    while not done.query():
        if time.monotonic() > deadline:
            comm.destroy()
            raise TimeoutError(
                f"{who}: NCCL weight-sync broadcast not finished after {timeout_s} s (a peer did not take "
                "part); the weight-sync group was aborted, build a new one"
            )
        time.sleep(0.001)


class NcclWeightSender:
    """Rank 0 of the weight-sync group, on the learner's rank-0 GPU. Every receiver must be
    created at the same time (the constructor is a collective: call it while the controller
    runs the engines' init_weight_sync). `timeout_s` bounds the rendezvous and each `send`."""

    def __init__(self, host: str, port: int, world_size: int, device: torch.device, timeout_s: int = 300):
        self.device = torch.device(device)
        self.timeout_s = timeout_s
        self.comm = _nccl_group(host, port, 0, world_size, self.device, timeout_s)

    @staticmethod
    def describe(named: Iterable[tuple[str, Tensor]], dtype: torch.dtype | None = None) -> NcclUpdate:
        """What the engines must expect from `send` with the same tensors (cast to `dtype` when given).
        Only names, shapes and dtypes are read: a sharded DTensor, whose shape is the full one, will do."""
        return NcclUpdate(tuple(TensorMeta(name, str(dtype or t.dtype), tuple(t.shape)) for name, t in named))

    def send(self, named: Iterable[tuple[str, Tensor]]) -> None:
        """Broadcast each tensor (in order) to all receivers; returns when all were sent."""
        stream = torch.cuda.current_stream(self.device)
        for _, tensor in named:
            self.comm.broadcast(tensor.detach().to(self.device).contiguous(), src=0, stream=stream)
        _wait_for_broadcasts(self.comm, stream, self.timeout_s, "NcclWeightSender.send")


class NcclWeightReceiver:
    """Rank `rank` (>= 1) of the weight-sync group, inside a vLLM worker process. `timeout_s` bounds
    the rendezvous and each `receive`."""

    def __init__(self, host: str, port: int, rank: int, world_size: int, device: torch.device, timeout_s: int = 300):
        if rank < 1:
            raise ValueError(f"weight-sync receivers take ranks >= 1 (rank 0 is the learner), got {rank}")
        self.device = torch.device(device)
        self.timeout_s = timeout_s
        self.comm = _nccl_group(host, port, rank, world_size, self.device, timeout_s)

    def receive(self, update: NcclUpdate) -> Iterator[tuple[str, Tensor]]:
        """Yield (name, tensor) as each broadcast lands, so the engine loads layer by layer."""
        stream = torch.cuda.current_stream(self.device)
        for meta in update.tensors:
            buffer = torch.empty(meta.shape, dtype=dtype_from_str(meta.dtype), device=self.device)
            self.comm.broadcast(buffer, src=0, stream=stream)
            yield meta.name, buffer
        _wait_for_broadcasts(self.comm, stream, self.timeout_s, "NcclWeightReceiver.receive")


# --------------------------------------------------------------------------- CUDA IPC (colocate)


def ipc_update(named: Iterable[tuple[str, Tensor]]) -> IpcUpdate:
    """Export CUDA IPC handles of tensors that all live on one GPU. Keep the tensors alive (and
    unchanged) until every engine's update_weights returned."""
    from torch.multiprocessing.reductions import reduce_tensor

    pairs = [(name, tensor.detach().contiguous()) for name, tensor in named]
    devices = {tensor.device for _, tensor in pairs}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        raise ValueError(f"ipc_update: tensors must all be on one CUDA device, found {sorted(map(str, devices))}")
    device = next(iter(devices))
    torch.cuda.synchronize(device)  # the handles must point at finished writes
    handles = [(name, reduce_tensor(tensor)[1]) for name, tensor in pairs]
    return IpcUpdate(tuple(name for name, _ in pairs), {gpu_uuid(device): pickle.dumps(handles)})


def merge_ipc_updates(updates: Iterable[IpcUpdate]) -> IpcUpdate:
    """One update from the per-GPU exports of several learner ranks (same names on each)."""
    updates = list(updates)
    names = {u.names for u in updates}
    if len(names) != 1:
        raise ValueError("merge_ipc_updates: the learner ranks exported different tensor names")
    handles: dict[str, bytes] = {}
    for update in updates:
        handles.update(update.handles)
    return IpcUpdate(updates[0].names, handles)


def open_ipc_handles(handles: dict[str, bytes], device: torch.device) -> list[tuple[str, Tensor]]:
    """Rebuild the tensors exported for this process's GPU (`device`) without copying them."""
    from torch.multiprocessing.reductions import rebuild_cuda_tensor

    uuid = gpu_uuid(device)
    if uuid not in handles:
        raise RuntimeError(f"no CUDA IPC handles for this GPU ({device}, UUID {uuid}); exported for {sorted(handles)}")
    named = []
    for name, args in pickle.loads(handles[uuid]):
        args = list(args)
        args[6] = device.index  # rebuild args hold the exporter's device index; ours may differ
        named.append((name, rebuild_cuda_tensor(*args)))
    return named
