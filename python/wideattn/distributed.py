"""Context parallelism through torch.distributed (one process per GPU with the NCCL backend;
gloo on the CPU): `context_parallel_attention`, one attention call of decode and speculative
steps over a KV cache sharded by position across the processes of a group; and
`ring_prefill_attention`, the prefill of one sequence by ring attention with zig-zag sharding;
and `allgather_prefill_attention`, the same prefill with every rank's K/V gathered first (one
collective, then one local call per query chunk; sliding windows served).

    out = wideattn.distributed.context_parallel_attention(
        q, k_shard, v_shard, query_offsets=cu_seqlens_q, kv_lengths=seq_lens,
        shard_starts=starts, shard_kv_lengths=local_lens, group=cp_group, scale=1.0)

Every rank passes the same queries q [tokens, q_heads, head_dim] (the step's new tokens,
replicated), the same query_offsets and kv_lengths (each sequence's whole length), and its own
shard: k_shard/v_shard a cache as `wideattn.attention` takes it (contiguous or paged), holding
positions [shard_starts[b], shard_starts[b] + shard_kv_lengths[b]) of sequence b in its rows
0 .. shard_kv_lengths[b] - 1. Each rank computes its shard's partial output and log-sum-exp with
the kernels of `wideattn.attention`; the partial states are gathered (all_gather_into_tensor, on
the group's backend and PyTorch's current stream) and merged with `wideattn.merge_states`, so
every rank returns the whole result, equal to one call over the whole cache within the usual
tolerance. The exchange is small: tokens x heads x (head_dim + 1) per rank.

Masks: causal (the new tokens are the last positions of their sequence) or bidirectional; no
window, ring or tree yet (they need the keys' positions in the kernels: NotImplementedError
naming the argument). A shard that ends at the sequence's end holds its new tokens' keys and is
attended causally; a shard that ends before the first new token is wholly visible to every new
token; a shard that holds only part of the new tokens' keys is refused (NotImplementedError
naming shard_starts), as is a visible shard shorter than the step's new tokens (the kernels
place queries at the end of the rows they are given). With one new token a sequence (decode)
every sharding is served. Sinks count once (rank 0's partial carries them).

Returns out [tokens, q_heads, head_dim] (q's dtype), or (out, lse) with return_lse; raises as
`wideattn.attention` does, plus the errors above.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from . import _frameworks as fw
from ._api import attention
from ._serving import merge_states

# Mask options that need the keys' positions in the kernels, and the value that turns each off.
_POSITIONAL = {"window": 0, "window_left": -1, "ring_length": 0, "ring_offset": 0, "tree": None}


def _refuse_positional_masks(options: dict, function: str) -> None:
    """Removes the positional mask options from `options`; raises for one that is on."""
    for name, off in _POSITIONAL.items():
        value = options.pop(name, None)
        if value is not None and (off is None or value != off):
            raise NotImplementedError(f"{function}: {name} = {value!r} is not served yet (a sharded window, "
                                      "ring or tree needs the keys' positions in the kernels)")


def _plan_rows(query_offsets, kv_lengths, shard_starts, shard_kv_lengths, causal):
    """Per sequence, how this rank's shard is attended: 'causal' (it ends at the sequence's end
    and holds every new token's key), 'visible' (all of it precedes every new token, or the mask
    is bidirectional), or 'empty'. Raises for the shardings the kernels cannot serve yet."""
    batch = len(kv_lengths)
    if len(query_offsets) != batch + 1:
        raise ValueError(f"context_parallel_attention: query_offsets has {len(query_offsets)} entries, "
                         f"expected batch + 1 = {batch + 1}")
    for name, values in (("shard_starts", shard_starts), ("shard_kv_lengths", shard_kv_lengths)):
        if len(values) != batch:
            raise ValueError(f"context_parallel_attention: {name} has {len(values)} entries, "
                             f"expected batch = {batch} (one per sequence)")
    modes = []  # decode rows (one new token) see every key of any shard: causal serves them
    for b in range(batch):
        suffix = query_offsets[b + 1] - query_offsets[b]
        start, local, length = shard_starts[b], shard_kv_lengths[b], kv_lengths[b]
        if start < 0 or local < 0 or start + local > length:
            raise ValueError(f"context_parallel_attention: shard_starts[{b}] = {start}, shard_kv_lengths[{b}] = "
                             f"{local}: expected 0 <= start and start + length <= kv_lengths[{b}] = {length}")
        if local == 0 or suffix == 0:
            modes.append("empty")
        elif causal and suffix == 1:
            modes.append("causal")
        elif not causal or start + local <= length - suffix:
            if local < suffix:
                raise NotImplementedError(
                    f"context_parallel_attention: shard_kv_lengths[{b}] = {local} is shorter than the "
                    f"sequence's {suffix} new tokens; the kernels place queries at the end of the rows "
                    "they are given (key position offsets: docs/design.md, issue 14)")
            modes.append("visible")
        elif start + local == length and local >= suffix:
            modes.append("causal")
        else:
            raise NotImplementedError(
                f"context_parallel_attention: shard_starts[{b}] = {start} with shard_kv_lengths[{b}] = {local} "
                f"holds part of the keys of the sequence's {suffix} new tokens (positions "
                f"{length - suffix} .. {length - 1}); shard so that one rank holds them all")
    return modes


def _local_call(q, k_shard, v_shard, query_offsets, shard_kv_lengths, modes, want, causal, options):
    """One attention call over the sequences whose mode is `want`, the others given no new
    token: their q rows are gathered (cheap: a step's tokens), the cache is passed whole."""
    rows: List[int] = []
    offsets = [0]
    for b, mode in enumerate(modes):
        if mode == want:
            rows.extend(range(query_offsets[b], query_offsets[b + 1]))
        offsets.append(len(rows))
    if not rows:
        return None, None
    import torch

    index = torch.tensor(rows, dtype=torch.long, device=q.device)
    q_rows = q.index_select(0, index)
    lengths = [n if mode == want else 0 for n, mode in zip(shard_kv_lengths, modes)]
    out, lse = attention(q_rows, k_shard, v_shard, query_offsets=offsets, kv_lengths=lengths,
                         causal=causal, return_lse=True, **options)
    return index, (out, lse)


def context_parallel_attention(
    q: Any,
    k_shard: Any,
    v_shard: Any,
    *,
    query_offsets: Sequence[int],
    kv_lengths: Sequence[int],
    shard_starts: Sequence[int],
    shard_kv_lengths: Sequence[int],
    group: Any = None,
    causal: bool = True,
    sinks: Optional[Any] = None,
    return_lse: bool = False,
    **options: Any,
) -> Any:
    """See the module's docstring. `options` are `wideattn.attention`'s scale, softcap, kernel,
    block_table, kv_layout, k_scale, v_scale, kv_cache_dtype and kv_splits, applied to every
    shard's call."""
    import torch
    import torch.distributed as dist

    _refuse_positional_masks(options, "context_parallel_attention")
    for name in ("out", "lse"):
        if name in options:
            raise TypeError(f"context_parallel_attention: {name} is not an option here")
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"context_parallel_attention: q must be a torch.Tensor (torch.distributed moves the "
                        f"partial states), got {type(q).__qualname__}")
    if q.dim() != 3:
        raise ValueError(f"context_parallel_attention: q must have 3 dimensions [tokens, q_heads, head_dim], "
                         f"got shape {tuple(q.shape)}")
    query_offsets = fw.host_int32(query_offsets, "query_offsets")
    kv_lengths = fw.host_int32(kv_lengths, "kv_lengths")
    shard_starts = fw.host_int32(shard_starts, "shard_starts")
    shard_kv_lengths = fw.host_int32(shard_kv_lengths, "shard_kv_lengths")
    modes = _plan_rows(query_offsets, kv_lengths, shard_starts, shard_kv_lengths, causal)
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    options["sinks"] = sinks if rank == 0 else None  # the sink logit counts once in the merge

    tokens, heads, head_dim = q.shape
    out = torch.zeros((tokens, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.full((tokens, heads), float("-inf"), dtype=torch.float32, device=q.device)
    # At most two calls: the shards that hold their sequence's new tokens (causal; every decode
    # row), and the shards wholly before them (visible, bidirectional).
    for mode in ("causal", "visible"):
        index, result = _local_call(q, k_shard, v_shard, query_offsets, shard_kv_lengths, modes, mode,
                                    mode == "causal", options)
        if result is not None:
            out.index_copy_(0, index, result[0])
            lse.index_copy_(0, index, result[1])
    if world == 1:
        return (out, lse) if return_lse else out
    if dist.get_backend(group) == "nccl":  # one buffer each
        outs: Any = torch.empty((world, tokens, heads, head_dim), dtype=q.dtype, device=q.device)
        lses: Any = torch.empty((world, tokens, heads), dtype=torch.float32, device=q.device)
        dist.all_gather_into_tensor(outs, out, group=group)
        dist.all_gather_into_tensor(lses, lse, group=group)
    else:  # gloo and others: lists
        outs = [torch.empty_like(out) for _ in range(world)]
        lses = [torch.empty_like(lse) for _ in range(world)]
        dist.all_gather(outs, out, group=group)
        dist.all_gather(lses, lse, group=group)
    merged_out, merged_lse = merge_states(outs, lses)
    return (merged_out, merged_lse) if return_lse else merged_out


def zigzag_chunks(rank: int, world: int) -> tuple:
    """The two chunks (of 2 * world equal ones) that `rank` holds under zig-zag sharding: rank
    and 2 * world - 1 - rank, so every rank has the same causal work."""
    return rank, 2 * world - 1 - rank


def ring_prefill_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    group: Any = None,
    causal: bool = True,
    sinks: Optional[Any] = None,
    return_lse: bool = False,
    **options: Any,
) -> Any:
    """Prefill of one sequence by ring attention over the ranks of a torch.distributed group,
    with zig-zag sharding: the sequence is cut into 2 x world equal chunks and this rank holds
    chunks `zigzag_chunks(rank, world)`, concatenated in that order: q [2c, q_heads, head_dim]
    (its queries), k and v [2c, kv_heads, head_dim] (the same positions' keys and values). At
    each of world steps the rank attends its query chunks to the key chunks in hand, then passes
    those on to the next rank while it works (isend/irecv, posted before the local attention): a
    key chunk before a query chunk is wholly visible, the query chunk's own is causal (with the
    sinks, counted once), a later one is skipped; each query chunk's partial states merge with
    `merge_states`. Returns this rank's out [2c, q_heads, head_dim] (q's dtype), or (out, lse).
    `options` as `attention`'s scale, softcap, kernel, kv_splits. Windows and uneven chunks need
    the keys' positions in the kernels: NotImplementedError."""
    import torch
    import torch.distributed as dist

    _refuse_positional_masks(options, "ring_prefill_attention")
    _check_zigzag_inputs(q, k, v, "ring_prefill_attention")
    rows = q.shape[0]
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    if 2 * world > 32:
        raise NotImplementedError(f"ring_prefill_attention: {world} ranks; merge_states combines at most 32 "
                                  "states (16 ranks)")
    chunk = rows // 2
    mine = zigzag_chunks(rank, world)
    states = {i: ([], []) for i in mine}
    # K and V in one buffer, so that a step is one message each way.
    in_hand = torch.stack((k, v)).contiguous()
    arriving = torch.empty_like(in_hand)
    next_rank = dist.get_global_rank(group, (rank + 1) % world) if group is not None else (rank + 1) % world
    previous_rank = dist.get_global_rank(group, (rank - 1) % world) if group is not None else (rank - 1) % world
    for step in range(world):
        requests = []
        if step + 1 < world:  # the next step's chunks travel while this one's are attended
            requests = dist.batch_isend_irecv([dist.P2POp(dist.isend, in_hand, next_rank, group),
                                               dist.P2POp(dist.irecv, arriving, previous_rank, group)])
        source = (rank - step) % world
        for slot_k, j in enumerate(zigzag_chunks(source, world)):
            for slot_q, i in enumerate(mine):
                if causal and j > i:
                    continue  # every key of chunk j comes after every query of chunk i
                keys = in_hand[0, slot_k * chunk:(slot_k + 1) * chunk].unsqueeze(0)
                values = in_hand[1, slot_k * chunk:(slot_k + 1) * chunk].unsqueeze(0)
                out, lse = attention(q[slot_q * chunk:(slot_q + 1) * chunk], keys, values,
                                     query_offsets=[0, chunk], kv_lengths=[chunk], causal=causal and i == j,
                                     sinks=sinks if i == j else None, return_lse=True, **options)
                states[i][0].append(out)
                states[i][1].append(lse)
        for request in requests:
            request.wait()
        if step + 1 < world:
            in_hand, arriving = arriving, in_hand
    outs, lses = [], []
    for i in mine:
        merged_out, merged_lse = merge_states(*states[i])
        outs.append(merged_out)
        lses.append(merged_lse)
    out = torch.cat(outs)
    return (out, torch.cat(lses)) if return_lse else out


def _check_zigzag_inputs(q, k, v, function: str) -> None:
    import torch

    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise TypeError(f"{function}: {name} must be a 3-dimensional torch.Tensor "
                            f"[2 chunks x rows, heads, head_dim], got {type(x).__qualname__}"
                            f"{'' if not isinstance(x, torch.Tensor) else ' of shape ' + str(tuple(x.shape))}")
    rows = q.shape[0]
    if rows % 2 or k.shape[0] != rows or v.shape[0] != rows:
        raise ValueError(f"{function}: q, k and v hold {rows}, {k.shape[0]} and {v.shape[0]} rows, "
                         "expected the same even count (two equal chunks; uneven ones need key position "
                         "offsets)")


def allgather_prefill_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    group: Any = None,
    causal: bool = True,
    sinks: Optional[Any] = None,
    return_lse: bool = False,
    **options: Any,
) -> Any:
    """Prefill of one sequence over the ranks of a torch.distributed group, with the inputs of
    `ring_prefill_attention` (zig-zag sharding: this rank holds chunks `zigzag_chunks(rank,
    world)` of 2 x world equal ones, concatenated): every rank's K and V are gathered first (one
    all_gather of 2 x world x chunk rows, on the group's backend), put back in sequence order,
    and each of this rank's query chunks attends the keys up to its own end in one local call
    (causal), or all of them (bidirectional). Against the ring: one collective instead of world
    steps, no partial states to merge, and each query keeps its position, so causal sliding
    windows (`window` / `window_left`) are served; the cost is the whole sequence's K and V on
    every rank, and a transfer that does not overlap the attention. Which is faster depends on
    the size and the links (docs/design.md). Returns this rank's out [2c, q_heads, head_dim]
    (q's dtype), or (out, lse). `options` as `attention`'s (scale, softcap, kernel, kv_splits,
    and windows when causal); rings and trees: NotImplementedError."""
    import torch
    import torch.distributed as dist

    window_options = {name: options.pop(name) for name in ("window", "window_left") if name in options}
    _refuse_positional_masks(options, "allgather_prefill_attention")
    windowed = any(value not in (None, 0, -1) for value in window_options.values())
    if windowed and not causal:
        raise NotImplementedError("allgather_prefill_attention: a window with causal=False is not served (the "
                                  "kernels place a chunk's queries at the end of the keys they are given)")
    _check_zigzag_inputs(q, k, v, "allgather_prefill_attention")
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    chunk = q.shape[0] // 2
    mine = torch.stack((k, v)).contiguous()  # [2, 2c, kv_heads, head_dim]: one message
    if dist.get_backend(group) == "nccl":
        gathered: Any = torch.empty((world, *mine.shape), dtype=mine.dtype, device=mine.device)
        dist.all_gather_into_tensor(gathered, mine, group=group)
        parts = [gathered[r] for r in range(world)]
    else:  # gloo and others: lists
        parts = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine, group=group)
    # Sequence order: rank r's two chunks go to positions zigzag_chunks(r, world).
    ordered = [None] * (2 * world)
    for r, part in enumerate(parts):
        for slot, position in enumerate(zigzag_chunks(r, world)):
            ordered[position] = part[:, slot * chunk:(slot + 1) * chunk]
    sequence = torch.cat(ordered, dim=1)  # [2, 2 world c, kv_heads, head_dim]
    outs, lses = [], []
    for slot, i in enumerate(zigzag_chunks(rank, world)):
        keys = (i + 1) * chunk if causal else sequence.shape[1]
        out, lse = attention(q[slot * chunk:(slot + 1) * chunk], sequence[0, :keys].unsqueeze(0),
                             sequence[1, :keys].unsqueeze(0), query_offsets=[0, chunk], kv_lengths=[keys],
                             causal=causal, sinks=sinks, return_lse=True, **window_options, **options)
        outs.append(out)
        lses.append(lse)
    out = torch.cat(outs)
    return (out, torch.cat(lses)) if return_lse else out
