"""Weight-sync methods added to every vLLM worker process.

`VLLMEngine` builds ``LLM(worker_extension_cls="rollouts.vllm_ext.WeightSyncExtension")``; vLLM
then makes this class a base of its Worker, so `self` below is the worker (``self.model_runner``,
``self.device``, ``self.rank``), and the engine calls these methods by name with
``llm.collective_rpc(name, args=...)``. Arguments travel by msgpack: bytes, str, numbers, lists.

Loading goes through the worker's ``reload_weights`` (vLLM's layerwise in-place reload), not a
bare ``model.load_weights``: on CPU, vLLM repacks linear weights into oneDNN kernels after loading
and drops the original parameters, so only the reload path (restore, load, re-process each layer)
can replace them. It takes Hugging Face names and fuses q/k/v and gate/up itself. The worker's
method, not ``model_runner.reload_weights`` directly: it sets vLLM's config context around the
reload, which quantized layers read while they re-process their weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from rollouts.weight_transport import (
    NcclUpdate,
    NcclWeightReceiver,
    TensorMeta,
    deserialize_tensors,
    open_ipc_handles,
)


class WeightSyncExtension:
    """Mixed into vLLM's Worker; every method runs in each worker (tensor-parallel rank)."""

    def load_serialized_weights(self, blob: bytes, aliases: dict[str, str]) -> int:
        """Load a `serialize_tensors` blob (in-memory transport); returns the tensor count."""
        return self._reload(deserialize_tensors(blob), aliases)

    def init_weight_sync_group(self, host: str, port: int, rank_offset: int, world_size: int) -> int:
        """Join the NCCL weight-sync group as rank rank_offset + this worker's rank."""
        rank = rank_offset + self.rank
        self._weight_receiver = NcclWeightReceiver(host, port, rank, world_size, self.device)
        return rank

    def load_broadcast_weights(self, metas: list[list], aliases: dict[str, str]) -> int:
        """Receive [name, dtype, shape] tensors, in order, from rank 0 of the weight-sync group."""
        receiver = getattr(self, "_weight_receiver", None)
        if receiver is None:
            raise RuntimeError("load_broadcast_weights before init_weight_sync_group")
        update = NcclUpdate(tuple(TensorMeta(name, dtype, tuple(shape)) for name, dtype, shape in metas))
        return self._reload(receiver.receive(update), aliases)

    def load_ipc_weights(self, handles: dict[str, bytes], aliases: dict[str, str]) -> int:
        """Load tensors shared by CUDA IPC (colocated learner on this GPU)."""
        count = self._reload(open_ipc_handles(handles, self.device), aliases)
        torch.cuda.synchronize(self.device)  # copies done: the exporter may free its tensors
        return count

    def reseed(self, seed: int) -> None:
        """Restart the sampler's random stream (it draws from the process-global generators)."""
        from vllm.utils.torch_utils import set_random_seed

        set_random_seed(seed)

    def _reload(self, named: Iterable[tuple[str, torch.Tensor]], aliases: dict[str, str]) -> int:
        """Reload from `named`, then load each tied alias {alias: source} with its source's tensor;
        returns how many tensors `named` held (aliases not counted)."""
        count = 0
        sources = set(aliases.values())

        def counted() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal count
            kept = {}
            for name, tensor in named:
                count += 1
                if name in sources:
                    kept[name] = tensor
                yield name, tensor
            for alias, source in aliases.items():
                yield alias, kept[source]

        self.reload_weights(weights_iterator=counted(), is_checkpoint_format=True)
        return count
