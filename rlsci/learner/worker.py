"""One learner rank: a Ray actor holding an FSDP2 shard of the policy (and of the frozen reference).

Created and driven by ``LearnerGroup`` (rlsci/learner/group.py), which calls each method on every rank at
once. Each rank receives the whole batch and derives its share itself: a mini-batch (or the batch, for
``compute_logprobs``) is padded with masked samples to a multiple of the world size W and cut into W
equal parts; rank r takes part r and packs it into micro-batches of at most ``micro_batch_tokens``
padded tokens. Ranks agree on the largest micro-batch count (an all-reduce) and the ones with fewer
run zero-weight padding micro-batches, so every rank makes the same FSDP collectives.

Loss scaling: each micro-batch loss is ``aggregate_loss`` with the GLOBAL counts of the mini-batch
(every rank holds the whole mini-batch, so it counts them without communication), multiplied by W
because FSDP averages gradients over ranks. The sum of the gradients is then the gradient of the
mini-batch loss, whatever the number of ranks and micro-batches.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from functools import partial

import ray
import torch
import torch.distributed as dist
import torch.nn.functional as F
import transformers
from torch import Tensor
from torch.distributed.tensor import DTensor

import rlsci.learner.checkpoint as checkpoint
from rlsci.algos import aggregate_loss, kl_penalty, policy_loss
from rlsci.batch import RolloutBatch
from rlsci.learner.config import LearnerConfig
from rlsci.learner.fsdp import (
    DTYPES,
    compute_dtype,
    iter_full_state_buckets,
    load_sharded_model,
    lr_factor,
    resolve_attn_implementation,
    shifted_logprobs,
    state_tensors,
    token_logprobs,
)
from rollouts.weight_transport import NcclUpdate, NcclWeightSender

# token-weighted statistics of a train step, summed over micro-batches and ranks
_TOKEN_STATS = ("clip_frac_low", "clip_frac_high", "clip_frac_dual", "approx_kl", "ratio_mean", "tis_weight_mean",
                "entropy", "kl_ref")


class LearnerWorker:
    """Rank ``rank`` of ``world_size``. Methods other than ``rendezvous_address`` are collectives."""

    def __init__(self, cfg: LearnerConfig, rank: int, world_size: int):
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device("cuda", 0) if cfg.gpus_per_rank > 0 else torch.device("cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(cfg.cpus_per_rank)))  # Ray reserved this many cores for the rank
        self.step = 0
        self.weight_sender: NcclWeightSender | None = None  # rank 0, after init_weight_sync

    # ------------------------------------------------------------------ setup

    def rendezvous_address(self) -> tuple[str, int]:
        """(host, free TCP port) of this actor's node, where rank 0 hosts the process-group store."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def setup(self, host: str, port: int) -> dict:
        """Join the process group, load the sharded policy (and reference), build AdamW and the schedule."""
        cfg = self.cfg
        transformers.utils.logging.disable_progress_bar()  # one "Loading weights" bar per rank is noise
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        # device_id binds the NCCL communicator to this rank's GPU (barriers and collectives never guess it)
        dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=self.rank, world_size=self.world_size,
                                device_id=self.device if self.device.type == "cuda" else None)
        torch.manual_seed(cfg.seed)
        compute = compute_dtype(self.device, DTYPES[cfg.dtype], cfg.mixed_precision)
        attn = resolve_attn_implementation(cfg.attn_implementation, self.device, compute)
        load = partial(load_sharded_model, rank=self.rank, device=self.device, compute_dtype=compute,
                       attn_implementation=attn, activation_checkpointing=cfg.activation_checkpointing)
        self.model, dropout = load(cfg.model_path, trainable=True)
        self.ref_model = load(cfg.ref_model_path or cfg.model_path, trainable=False)[0] if cfg.kl_coef != 0 else None
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                           weight_decay=cfg.weight_decay)
        schedule = partial(lr_factor, warmup_steps=cfg.warmup_steps, total_steps=cfg.total_steps,
                           schedule=cfg.schedule, min_lr_ratio=cfg.min_lr_ratio)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        return {
            "rank": self.rank,
            "device": str(self.device),
            "backend": backend,
            "attn_implementation": attn,
            "master_dtype": str(next(self.model.parameters()).dtype),  # always float32
            "compute_dtype": str(compute),
            "dropout_zeroed": dropout,  # {config field: value it had}, set to 0 for training
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "reference_model": self.ref_model is not None,
            "activation_checkpointing": self.model.is_gradient_checkpointing,
        }

    # ------------------------------------------------------------------ work sharing

    def _my_share(self, batch: RolloutBatch) -> RolloutBatch:
        """Part ``rank`` of the batch padded with masked samples to a multiple of the world size."""
        return batch.pad_to_multiple(self.world_size).split(self.world_size)[self.rank]

    def _max_over_ranks(self, value: int) -> int:
        t = torch.tensor([value], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def _micro_steps(self, share: RolloutBatch) -> list[tuple[Tensor | None, RolloutBatch]]:
        """(row indices into share, micro-batch) pairs, padded with (None, one masked sample) so every
        rank runs the same number of forward passes."""
        indices = share.micro_batch_indices(self.cfg.micro_batch_tokens)
        steps: list[tuple[Tensor | None, RolloutBatch]] = [(idx, share.select(idx).trim()) for idx in indices]
        missing = self._max_over_ranks(len(steps)) - len(steps)
        steps += [(None, share.padding_samples(1).trim())] * missing
        return steps

    # ------------------------------------------------------------------ scoring

    @torch.no_grad()
    def compute_logprobs(self, batch: RolloutBatch, which: str) -> Tensor:
        """(B_r, L) float32 logprobs of this rank's share (see LearnerGroup.compute_logprobs)."""
        model = self.model if which == "policy" else self.ref_model
        share = self._my_share(batch)
        out = torch.zeros(share.size, share.seq_len, dtype=torch.float32)
        was_training = model.training
        model.eval()
        for idx, micro in self._micro_steps(share):
            micro = micro.to(self.device)
            logprobs, _ = token_logprobs(model, micro, temperature=self.cfg.temperature, with_entropy=False)
            if idx is not None:
                attended = micro.attention_mask.bool()
                out[idx, : micro.seq_len] = torch.where(attended, logprobs, 0.0).float().cpu()
        model.train(was_training)
        return out

    # ------------------------------------------------------------------ training

    def _mini_batch_order(self, size: int, epoch: int) -> Tensor:
        """Sample order of one epoch: a permutation seeded by (seed, step, epoch), the same on every rank."""
        if not self.cfg.shuffle_mini_batches:
            return torch.arange(size)
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step * 1_009 + epoch)
        return torch.randperm(size, generator=generator)

    def _forward_backward(self, micro: RolloutBatch, num_tokens: int, num_seqs: int, sums: dict[str, Tensor]) -> None:
        """Accumulate the gradient of this micro-batch's share of the mini-batch loss; add its stats to sums."""
        cfg = self.cfg
        logprobs, entropy = token_logprobs(self.model, micro, temperature=cfg.temperature, with_entropy=True,
                                           entropy_grad=cfg.entropy_coef != 0)
        mask = micro.loss_mask()  # (b, l)
        old = micro.old_logprobs if micro.old_logprobs is not None else logprobs.detach()  # on-policy: ratio 1
        if micro.old_logprobs is None and micro.behaviour_logprobs is not None:
            # the engine's logprobs of the sampled tokens against these, for free: the check that the
            # engines sample from the learner's weights, without the separate old-logprob pass
            gap = ((logprobs.detach() - micro.behaviour_logprobs).abs() * mask).max()
            sums["behaviour_gap_max"] = torch.maximum(sums["behaviour_gap_max"], gap)
        out = policy_loss(
            logprobs, old, micro.advantages, mask,
            clip_low=cfg.clip_low, clip_high=cfg.clip_high, dual_clip=cfg.dual_clip,
            behaviour_logprobs=micro.behaviour_logprobs if cfg.tis_cap is not None else None, tis_cap=cfg.tis_cap,
        )
        aggregate = partial(aggregate_loss, mask=mask, mode=cfg.loss_agg, num_tokens=num_tokens, num_seqs=num_seqs,
                            norm_len=cfg.norm_len)
        pg_loss = aggregate(out.loss)
        loss = pg_loss
        if cfg.entropy_coef != 0:
            loss = loss - cfg.entropy_coef * aggregate(entropy)
        kl = None
        if micro.ref_logprobs is not None:
            kl = kl_penalty(logprobs, micro.ref_logprobs, estimator=cfg.kl_estimator)
            if cfg.kl_coef != 0:
                loss = loss + cfg.kl_coef * aggregate(kl)
        (loss * self.world_size).backward()  # FSDP averages gradients over ranks; the loss is a global sum

        with torch.no_grad():
            tokens = mask.sum()
            sums["pg_loss"] += pg_loss.detach()
            sums["tokens"] += tokens
            for name in ("clip_frac_low", "clip_frac_high", "clip_frac_dual", "approx_kl", "ratio_mean",
                         "tis_weight_mean"):
                sums[name] += getattr(out, name) * tokens
            sums["entropy"] += (entropy.detach() * mask).sum()
            if kl is not None:
                sums["kl_ref"] += (kl.detach() * mask).sum()

    def _optimizer_step(self) -> Tensor:
        """Clip the global gradient norm, step AdamW unless the norm is not finite; return the norm."""
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
        if torch.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm.detach().float()

    def train_step(self, batch: RolloutBatch) -> dict[str, float]:
        """ppo_epochs x mini-batches of AdamW steps on ``batch``; stats are global (all ranks reduced).

        Without old_logprobs (allowed for a single optimizer step: check_train_batch) the ratio is taken
        to the detached current logprobs, i.e. it is 1 and the step is the on-policy policy gradient.
        """
        cfg = self.cfg
        start = time.perf_counter()
        mini_size = cfg.mini_batch_size or batch.size
        num_mini = math.ceil(batch.size / mini_size)
        names = ("pg_loss", "tokens", *_TOKEN_STATS)
        sums = {name: torch.zeros((), device=self.device) for name in (*names, "behaviour_gap_max")}
        norms: list[Tensor] = []
        lr = self.scheduler.get_last_lr()[0]
        self.model.train()
        for epoch in range(cfg.ppo_epochs):
            order = self._mini_batch_order(batch.size, epoch)
            for m in range(num_mini):
                mini = batch.select(order[m * mini_size : (m + 1) * mini_size])
                # every rank holds the whole mini-batch, so these global counts need no all-reduce
                num_tokens, num_seqs = mini.num_loss_tokens(), mini.num_loss_seqs()
                if num_tokens == 0:  # nothing to learn from (e.g. all samples masked); same decision on all ranks
                    continue
                for _, micro in self._micro_steps(self._my_share(mini)):
                    self._forward_backward(micro.to(self.device), num_tokens, num_seqs, sums)
                norms.append(self._optimizer_step())
        self.scheduler.step()
        self.step += 1

        totals = torch.stack([sums[name] for name in names])
        dist.all_reduce(totals)
        total = dict(zip(names, totals.tolist(), strict=True))
        tokens = max(total["tokens"], 1.0)
        stats = {name: total[name] / tokens for name in _TOKEN_STATS}
        if batch.ref_logprobs is None:
            del stats["kl_ref"]
        if batch.old_logprobs is None:
            gap = sums["behaviour_gap_max"]
            dist.all_reduce(gap, op=dist.ReduceOp.MAX)
            stats["behaviour_logprob_diff_max"] = gap.item()
        norm_values = torch.stack(norms).cpu() if norms else torch.zeros(0)
        finite = torch.isfinite(norm_values)
        elapsed = time.perf_counter() - start
        stats.update(
            pg_loss=total["pg_loss"] / max(len(norms), 1),
            grad_norm=float(norm_values[finite].mean()) if finite.any() else float("nan"),
            grad_norm_max=float(norm_values[finite].max()) if finite.any() else float("nan"),
            optimizer_steps=float(finite.sum()),
            skipped_steps=float((~finite).sum()),
            lr=lr,
            tokens=total["tokens"],
            time_s=elapsed,
            step=float(self.step),
        )
        return stats

    def sft_step(self, batch: RolloutBatch) -> dict[str, float]:
        """One AdamW step of supervised fine-tuning: cross-entropy of the response tokens (teacher forcing),
        ``loss = -sum(mask * log p(token)) / (tokens in the batch)``, at temperature 1 whatever
        learner.temperature is (that one matches the sampler of RL). Stats are global over ranks."""
        start = time.perf_counter()
        num_tokens = batch.num_loss_tokens()  # every rank holds the whole batch: a global count
        sums = torch.zeros(3, device=self.device)  # summed -log p, loss tokens, tokens whose argmax is the target
        self.model.train()
        lr = self.scheduler.get_last_lr()[0]
        for _, micro in self._micro_steps(self._my_share(batch)):
            micro = micro.to(self.device)
            logits = self.model(input_ids=micro.input_ids, attention_mask=micro.attention_mask, use_cache=False).logits
            logprobs, _ = shifted_logprobs(logits, micro.input_ids, temperature=1.0, with_entropy=False)  # (b, l)
            with torch.no_grad():  # the model's greedy choice at each position is the target token
                hits = F.pad((logits[:, :-1].argmax(-1) == micro.input_ids[:, 1:]).float(), (1, 0))
            mask = micro.loss_mask()
            nll = -(logprobs * mask).sum()
            (nll / max(num_tokens, 1) * self.world_size).backward()  # FSDP averages gradients over ranks
            sums += torch.stack([nll.detach(), mask.sum(), (hits * mask).sum()])
        norm = self._optimizer_step()
        self.scheduler.step()
        self.step += 1
        dist.all_reduce(sums)
        nll, tokens, hits = sums.tolist()
        return {"loss": nll / max(tokens, 1.0), "token_acc": hits / max(tokens, 1.0), "grad_norm": float(norm),
                "lr": lr, "tokens": tokens, "time_s": time.perf_counter() - start, "step": float(self.step)}

    # ------------------------------------------------------------------ weights out, checkpoints

    @ray.method(_generator_backpressure_num_objects=2)
    def state_dict_buckets(self, bucket_bytes: int, dtype: torch.dtype | None) -> Iterator[list[tuple[str, Tensor]]]:
        """Buckets of full CPU tensors on rank 0, nothing on the others (they take part in the gathers)."""
        yield from iter_full_state_buckets(self.model, bucket_bytes, is_source=self.rank == 0, dtype=dtype, to_cpu=True)

    def init_weight_sync(self, host: str, port: int, world_size: int) -> None:
        """Rank 0 joins the NCCL weight-sync group at host:port as its rank 0 (the engines' workers are
        ranks 1..; rollouts/weight_transport.py). A collective with the engines; other ranks do nothing."""
        if self.rank == 0:
            self.weight_sender = NcclWeightSender(host, port, world_size, self.device)

    def weight_sync_update(self, dtype: torch.dtype | None) -> NcclUpdate:
        """Names, full shapes and dtypes of what broadcast_weights sends, in its order (no gathering).

        Called on every rank: each reshards its root (left unsharded, in the bf16 compute dtype under
        mixed precision, by a no-grad forward), as ranks whose roots differ would deadlock the next
        forward's all-gather."""
        self.model.reshard()
        return NcclWeightSender.describe(state_tensors(self.model), dtype=dtype)

    def broadcast_weights(self, bucket_bytes: int, dtype: torch.dtype | None) -> None:
        """Every rank gathers the full weights bucket by bucket (on its GPU); rank 0 broadcasts each bucket
        over the weight-sync group while the engines run update_weights(weight_sync_update(dtype))."""
        buckets = iter_full_state_buckets(self.model, bucket_bytes, is_source=self.rank == 0, dtype=dtype, to_cpu=False)
        for bucket in buckets:
            self.weight_sender.send(bucket)

    def save(self, directory: str) -> None:
        checkpoint.save_checkpoint(directory, self.model, self.optimizer, self.scheduler, step=self.step,
                                   rank=self.rank, world_size=self.world_size, device=self.device)

    def load(self, directory: str) -> int:
        self.step = checkpoint.load_checkpoint(directory, self.model, self.optimizer, self.scheduler, rank=self.rank,
                                               device=self.device)
        return self.step

    def export_hf(self, directory: str, dtype: torch.dtype | None, max_shard_bytes: int) -> None:
        checkpoint.export_hf(directory, self.model, source_path=self.cfg.model_path, rank=self.rank,
                             dtype=dtype or DTYPES[self.cfg.dtype], max_shard_bytes=max_shard_bytes)

    def shutdown(self) -> None:
        dist.destroy_process_group()

