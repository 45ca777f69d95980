"""GPU-only parts of the vLLM engine: sleep/wake (colocation), weight updates by CUDA IPC
(colocate) and by NCCL broadcast from a learner process (split, needs 2 GPUs).

Each checks greedy outputs against a reference engine started on the new weights (same kernels,
so the tokens are equal; logprobs to 1e-5 as on CPU)."""

from __future__ import annotations

import socket

import pytest
import ray
import torch

from rollouts import SamplingConfig, VLLMEngine
from rollouts.weight_transport import NcclWeightSender, ipc_update
from rollouts.worker import RolloutPool

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

# two engines share a GPU in this module: a quarter of its memory each
GPU_KWARGS = {"dtype": "float32", "max_model_len": 512, "max_num_seqs": 32, "gpu_memory_utilization": 0.25}
GREEDY = SamplingConfig(n=1, temperature=0, max_tokens=8)
LOGPROB_ATOL = 1e-5
RAY_RESOURCES = {"num_cpus": 4, "num_gpus": torch.cuda.device_count()}  # for the ray_cluster fixture (tests/conftest.py)


@pytest.fixture(scope="module")
def reference(tiny_models):
    """Greedy completions of an engine started on the seed-1 weights."""
    engine = VLLMEngine(tiny_models[1], seed=0, **GPU_KWARGS)
    yield engine
    engine.shutdown()


def assert_same_greedy(got, expected):
    assert [c.response_ids for c in got] == [c.response_ids for c in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_ATOL)


def test_sleep_frees_gpu_memory_and_wake_restores_the_engine(tiny_models, prompts):
    engine = VLLMEngine(tiny_models[0], seed=0, enable_sleep_mode=True, **GPU_KWARGS)
    try:
        before = engine.generate(prompts, GREEDY)
        free_awake, total = torch.cuda.mem_get_info()
        engine.sleep()
        free_asleep, _ = torch.cuda.mem_get_info()
        # the KV cache takes most of the engine's 25% share; at least 10% of the GPU comes back
        assert free_asleep - free_awake > 0.10 * total
        with pytest.raises(RuntimeError, match="update_weights while asleep"):  # its weights are not on the GPU
            engine.update_weights([])
        engine.wake()
        assert_same_greedy(engine.generate(prompts, GREEDY), before)
    finally:
        engine.shutdown()


def test_cuda_ipc_update_matches_a_fresh_engine(tiny_models, prompts, hf_models, reference):
    """The learner's tensors stay in this process on the GPU; the vLLM worker process opens them."""
    engine = VLLMEngine(tiny_models[0], seed=0, **GPU_KWARGS)
    try:
        before = engine.generate(prompts, GREEDY)
        named = [(name, tensor.cuda()) for name, tensor in hf_models[1].state_dict().items()]
        engine.update_weights(ipc_update(named))
        after = engine.generate(prompts, GREEDY)
        assert_same_greedy(after, reference.generate(prompts, GREEDY))
        assert [c.response_ids for c in after] != [c.response_ids for c in before]
    finally:
        engine.shutdown()


class Learner:
    """Stands in for learner rank 0: full weights on its own GPU, rank 0 of the weight-sync group."""

    def __init__(self, model_path: str):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).cuda()
        self.named = list(model.state_dict().items())

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def init_sender(self, host: str, port: int, world_size: int, timeout_s: int = 300) -> None:
        self.sender = NcclWeightSender(host, port, world_size, torch.device("cuda", 0), timeout_s=timeout_s)

    def describe(self):
        return NcclWeightSender.describe(self.named)

    def send(self) -> None:
        self.sender.send(self.named)

    def send_zeros(self, numel: int) -> None:
        """Broadcast one tensor of `numel` float32 zeros (far more than NCCL buffers without a receiver)."""
        self.sender.send([("zeros", torch.zeros(numel, device="cuda"))])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL weight sync needs 2 GPUs (learner, engine)")
def test_nccl_broadcast_update_from_a_learner_actor(tiny_models, prompts, reference, ray_cluster):
    pool = RolloutPool("vllm", 1, {"model": str(tiny_models[0]), **GPU_KWARGS}, num_gpus_per_worker=1)
    learner = ray.remote(num_gpus=1)(Learner).remote(str(tiny_models[1]))
    try:
        before = pool.generate(prompts, GREEDY)
        host, port = ray.get(learner.address.remote())
        world_size = pool.weight_sync_world_size()
        assert world_size == 2
        ray.get(pool.submit_init_weight_sync(host, port) + [learner.init_sender.remote(host, port, world_size)])
        update = ray.get(learner.describe.remote())
        ray.get(pool.submit_update_weights(update) + [learner.send.remote()])
        after = pool.generate(prompts, GREEDY)
        assert_same_greedy(after, reference.generate(prompts, GREEDY))
        assert [c.response_ids for c in after] != [c.response_ids for c in before]
    finally:
        pool.shutdown()
        ray.kill(learner)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL weight sync needs 2 GPUs (learner, engine)")
def test_nccl_update_refused_on_the_driver_leaves_the_learner_free(tiny_models, prompts, reference, ray_cluster):
    """A receiver that would fail (wrong names, or asleep) is found before either side is submitted: the
    learner's send never starts, so the learner actor answers its next call; a sender whose receivers
    never take part gives up after the weight-sync group's timeout instead of blocking for good."""
    pool = RolloutPool("vllm", 1, {"model": str(tiny_models[0]), **GPU_KWARGS}, num_gpus_per_worker=1)
    learner = ray.remote(num_gpus=1)(Learner).remote(str(tiny_models[1]))
    try:
        host, port = ray.get(learner.address.remote())
        ray.get(pool.submit_init_weight_sync(host, port) + [learner.init_sender.remote(host, port, 2, 20)])
        update = ray.get(learner.describe.remote())
        wrong = type(update)(update.tensors[:-1])  # one tensor short
        with pytest.raises(ValueError, match="missing"):
            ray.get(pool.submit_update_weights(wrong) + [learner.send.remote()])
        assert ray.get(learner.describe.remote(), timeout=30) == update  # not stuck in a send
        with pytest.raises(ray.exceptions.RayTaskError, match="TimeoutError"):
            ray.get(learner.send_zeros.remote(2**26), timeout=120)  # 256 MiB nobody receives: aborted after 20 s
    finally:
        pool.shutdown()
        ray.kill(learner)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="tensor parallelism needs 2 GPUs")
def test_tensor_parallel_rollout_worker_starts_in_a_placement_group(tiny_models, prompts, reference, ray_cluster):
    """A TP=2 engine in an actor holding a 2-GPU bundle (as rlsci.topology places rollout workers) starts
    with vLLM's multiprocessing executor (rollouts.worker.in_actor_engine_kwargs) and matches TP=1."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"CPU": 1, "GPU": 2}])
    ray.get(group.ready(), timeout=120)
    options = {"num_cpus": 1, "num_gpus": 2,
               "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)}
    pool = RolloutPool("vllm", 1, {"model": str(tiny_models[1]), "tensor_parallel_size": 2, **GPU_KWARGS},
                       actor_options=[options])
    try:
        assert_same_greedy(pool.generate(prompts, GREEDY), reference.generate(prompts, GREEDY))
    finally:
        pool.shutdown()
        remove_placement_group(group)
