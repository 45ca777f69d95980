from __future__ import annotations

import pytest
import torch

from rollouts.weight_transport import (
    IpcUpdate,
    NcclWeightSender,
    TensorMeta,
    deserialize_tensors,
    dtype_from_str,
    merge_ipc_updates,
    serialize_tensors,
)


def test_serialized_tensors_round_trip_with_shared_storage_and_dtypes():
    embed = torch.randn(4, 3)
    named = [("embed", embed), ("lm_head", embed), ("norm", torch.ones(3, dtype=torch.bfloat16))]
    back = deserialize_tensors(serialize_tensors(named))
    assert [name for name, _ in back] == ["embed", "lm_head", "norm"]
    for (_, a), (_, b) in zip(named, back, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


def test_dtype_from_str():
    assert dtype_from_str("torch.bfloat16") is torch.bfloat16
    assert dtype_from_str("float32") is torch.float32
    with pytest.raises(ValueError, match="unknown torch dtype 'torch.float99'"):
        dtype_from_str("torch.float99")


def test_nccl_update_describes_tensors_in_send_order():
    named = [("b", torch.zeros(2, 3, dtype=torch.bfloat16)), ("a", torch.zeros(5))]
    update = NcclWeightSender.describe(named)
    assert update.tensors == (TensorMeta("b", "torch.bfloat16", (2, 3)), TensorMeta("a", "torch.float32", (5,)))
    assert update.names == ["b", "a"]
    # sent cast to bfloat16
    cast = NcclWeightSender.describe(named, dtype=torch.bfloat16)
    assert [t.dtype for t in cast.tensors] == ["torch.bfloat16", "torch.bfloat16"]


def test_merge_ipc_updates_joins_gpus_and_checks_names():
    merged = merge_ipc_updates([IpcUpdate(("w",), {"GPU-0": b"h0"}), IpcUpdate(("w",), {"GPU-1": b"h1"})])
    assert merged == IpcUpdate(("w",), {"GPU-0": b"h0", "GPU-1": b"h1"})
    with pytest.raises(ValueError, match="different tensor names"):
        merge_ipc_updates([IpcUpdate(("w",), {"GPU-0": b"h0"}), IpcUpdate(("v",), {"GPU-1": b"h1"})])
