"""RolloutBatch: layout and logprob positions, validation, padding, splitting and micro-batch packing."""

import dataclasses

import pytest
import torch

from rlsci.batch import RolloutBatch


def two_samples(**overrides) -> RolloutBatch:
    # sample 0: prompt [5, 6, 7], response [8, 9]      -> length 5
    # sample 1: prompt [5],       response [10, 11, 12] -> length 4, one pad column
    kwargs = dict(
        advantages=[1.5, -0.5],
        behaviour_logprobs=[[-0.1, -0.2], [-0.3, -0.4, -0.5]],
        group_ids=[7, 7],
        pad_token_id=99,
    )
    kwargs.update(overrides)
    return RolloutBatch.from_sequences([[5, 6, 7], [5]], [[8, 9], [10, 11, 12]], **kwargs)


def batch_of_lengths(lengths: list[int]) -> RolloutBatch:
    """Prompts of 1 token (id 1) and responses of length-1 tokens (id 2)."""
    return RolloutBatch.from_sequences(
        [[1]] * len(lengths),
        [[2] * (n - 1) for n in lengths],
        advantages=[float(i) for i in range(len(lengths))],
        behaviour_logprobs=[[-1.0] * (n - 1) for n in lengths],
        group_ids=list(range(len(lengths))),
    )


def test_from_sequences_layout_and_logprob_positions():
    b = two_samples()
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9], [5, 10, 11, 12, 99]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert b.response_mask.tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 0]]
    # logprob of response token j sits at the token's own position prompt_len + j (not one before):
    # sample 0 token 8 is at position 3, sample 1 token 10 at position 1.
    assert b.behaviour_logprobs[0].tolist() == pytest.approx([0, 0, 0, -0.1, -0.2])
    assert b.behaviour_logprobs[1].tolist() == pytest.approx([0, -0.3, -0.4, -0.5, 0])
    assert b.input_ids[0, 3] == 8 and b.input_ids[1, 1] == 10
    assert b.advantages.tolist() == [1.5, -0.5] and b.group_ids.tolist() == [7, 7]
    assert b.sample_mask.tolist() == [1, 1]
    assert (b.size, b.seq_len, b.num_loss_tokens(), b.num_loss_seqs()) == (2, 5, 5, 2)
    assert b.lengths().tolist() == [5, 4]


def test_response_loss_mask_masks_tokens_and_sequences():
    b = two_samples(response_loss_mask=[[0, 0], [1, 0, 1]])
    assert b.response_mask.tolist() == [[0, 0, 0, 0, 0], [0, 1, 0, 1, 0]]
    # 2 trained tokens, 1 sequence with at least one trained token
    assert (b.num_loss_tokens(), b.num_loss_seqs()) == (2, 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(behaviour_logprobs=[[-0.1], [-0.3, -0.4, -0.5]]), r"behaviour_logprobs\[0\] has 1 values"),
        (dict(group_ids=[1]), "group_ids has 1 samples, prompt_ids has 2"),
        (dict(response_loss_mask=[[1, 1], [1]]), r"response_loss_mask\[1\] has 1 values"),
    ],
)
def test_from_sequences_names_the_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        two_samples(**overrides)


def test_from_sequences_rejects_empty_prompt():
    with pytest.raises(ValueError, match=r"prompt_ids\[1\] is empty"):
        RolloutBatch.from_sequences([[1], []], [[2], [3]], advantages=[0, 0], behaviour_logprobs=[[0], [0]],
                                    group_ids=[0, 0])


def test_validate_names_field_and_row():
    b = two_samples()
    with pytest.raises(ValueError, match=r"advantages: shape \(3,\), expected \(B,\) = \(2,\)"):
        dataclasses.replace(b, advantages=torch.zeros(3)).validate()
    with pytest.raises(ValueError, match="old_logprobs: dtype torch.float64"):
        dataclasses.replace(b, old_logprobs=torch.zeros(2, 5, dtype=torch.float64)).validate()
    on_pad = b.response_mask.clone()
    on_pad[1, 4] = 1  # position 4 of row 1 is padding
    with pytest.raises(ValueError, match="row 1: response_mask is 1 on a padding position"):
        dataclasses.replace(b, response_mask=on_pad).validate()
    left_padded = b.attention_mask.clone()
    left_padded[1] = torch.tensor([0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="row 1: attention_mask is not right-padded"):
        dataclasses.replace(b, attention_mask=left_padded).validate()
    nan = b.behaviour_logprobs.clone()
    nan[0, 3] = float("nan")
    with pytest.raises(ValueError, match="row 0: behaviour_logprobs is not finite"):
        dataclasses.replace(b, behaviour_logprobs=nan).validate()


def test_pad_to_multiple_appends_masked_samples():
    b = dataclasses.replace(batch_of_lengths([3, 5, 2]), old_logprobs=torch.full((3, 5), -1.0))
    p = b.pad_to_multiple(2)  # 3 -> 4 samples
    assert p.size == 4 and p.seq_len == 5
    assert torch.equal(p.input_ids[:3], b.input_ids)
    assert p.attention_mask[3].tolist() == [1, 0, 0, 0, 0]  # one attended token: no fully masked row
    assert p.input_ids[3, 0] == b.input_ids[0, 0]
    assert p.response_mask[3].sum() == 0 and p.sample_mask.tolist() == [1, 1, 1, 0]
    assert p.advantages[3] == 0 and p.group_ids[3] == -1
    assert p.old_logprobs[3].tolist() == [0.0] * 5 and p.ref_logprobs is None
    assert p.num_loss_tokens() == b.num_loss_tokens()  # 2 + 4 + 1 = 7
    p.validate()
    assert b.pad_to_multiple(3) is b  # already a multiple


def test_split_and_select():
    b = batch_of_lengths([3, 5, 2, 4])
    parts = b.split(2)
    assert [p.advantages.tolist() for p in parts] == [[0.0, 1.0], [2.0, 3.0]]
    assert b.select([3, 0]).lengths().tolist() == [4, 3]
    with pytest.raises(ValueError, match="call pad_to_multiple"):
        b.split(3)
    with pytest.raises(IndexError):
        b.select([4])


def test_loss_mask_zeroes_padding_samples():
    b = batch_of_lengths([3, 2])
    masked = dataclasses.replace(b, sample_mask=torch.tensor([1.0, 0.0]))
    # sample 0 has 2 response tokens; sample 1 is a padding sample
    assert masked.loss_mask().sum() == 2 and masked.num_loss_seqs() == 1


def test_micro_batch_packing_by_token_budget():
    b = batch_of_lengths([10, 3, 7, 4, 2])
    # sorted by length: rows 0 (10), 2 (7), 3 (4), 1 (3), 4 (2); budget 14 padded tokens:
    # [0] alone (2 x 10 = 20 > 14); [2, 3] (2 x 7 = 14; a third row: 3 x 7 = 21 > 14); [1, 4] (2 x 3 = 6)
    groups = b.micro_batch_indices(14)
    assert [g.tolist() for g in groups] == [[0], [2, 3], [1, 4]]
    micro = b.micro_batches(14)
    assert [m.seq_len for m in micro] == [10, 7, 3]  # trimmed to the longest row
    assert [m.advantages.tolist() for m in micro] == [[0.0], [2.0, 3.0], [1.0, 4.0]]
    # a row longer than the budget still gets a micro-batch of its own
    assert [g.tolist() for g in b.micro_batch_indices(5)] == [[0], [2], [3], [1], [4]]


def test_micro_batches_cover_every_row_once():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 30, (40,), generator=gen).tolist()
    b = batch_of_lengths(lengths)
    groups = b.micro_batch_indices(64)
    assert sorted(torch.cat(groups).tolist()) == list(range(40))
    for g in groups:
        longest = max(lengths[i] for i in g.tolist())
        assert len(g) == 1 or len(g) * longest <= 64
    assert sum(m.num_loss_tokens() for m in b.micro_batches(64)) == b.num_loss_tokens()


def test_concat_requires_matching_fields():
    b = batch_of_lengths([3, 2])
    both = RolloutBatch.concat([b, b.padding_samples(2)])
    assert both.size == 4 and both.sample_mask.tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match="old_logprobs is set in some batches"):
        RolloutBatch.concat([b, dataclasses.replace(b, old_logprobs=torch.zeros(2, 3))])
    with pytest.raises(ValueError, match="different L"):
        RolloutBatch.concat([b, batch_of_lengths([5])])
