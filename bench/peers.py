"""wideattn against the PyTorch attention paths that exist for wide heads, in one process, on the
shapes of shared/reference/peers.md (Gemma 4 global layers: head_dim 512, scale 1.0, causal;
plus head_dim 128 and 256).

    python3 bench/peers.py OUTDIR [--quick] [--cases NAME,...] [--peers NAME,...]

Peers: wideattn (this package: wideattn.attention on torch tensors, through the PyTorch operator;
wideattn_direct: the extension called without the operator's dispatch), eager matmul-softmax-matmul, SDPA memory-efficient with K/V
repeated per query head, SDPA cuDNN and flash (where they have a kernel), FlexAttention.
Each case is checked against an fp32 reference on sampled query rows before it is timed.
Timings: median of per-call CUDA events after warm-up; KV buffers rotate when the cache is
smaller than a few L2s. Ceilings measured in the same run: an 8192^3 bf16 matmul (TFLOP/s) and a
device-to-device copy (GB/s, bytes read + written). TFLOP/s count only visible causal pairs
(4 * heads * pairs * head_dim); decode GB/s count Q, K, V read and O written.
Writes OUTDIR/peers.md, OUTDIR/peers.json and OUTDIR/peers.png (when matplotlib is there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

try:  # only the wideattn peers need the package; the others run without it
    import wideattn
except ImportError as _import_error:  # pragma: no cover - depends on the machine
    wideattn = None
    _WIDEATTN_IMPORT_ERROR = str(_import_error)

DTYPE = torch.bfloat16
DECODE_MAX_SUFFIX = 8  # wideattn's dispatch threshold: longer suffixes are prefill


@dataclass
class Case:
    name: str
    batch: int
    new_tokens: int  # per sequence (the suffix)
    kv_length: int  # per sequence, suffix included
    heads: int
    kv_heads: int
    head_dim: int
    scale: float = 1.0
    window: int = 0  # > 0: sliding window (a key is visible when 0 <= qpos - kpos < window)

    @property
    def decode(self) -> bool:
        return self.new_tokens <= DECODE_MAX_SUFFIX

    @property
    def prefix(self) -> int:
        return self.kv_length - self.new_tokens

    def visible_pairs(self) -> int:
        n, p, w = self.new_tokens, self.prefix, self.window
        if w <= 0:
            return self.batch * (n * p + n * (n + 1) // 2)
        # sum over qpos in [p, p + n) of min(qpos + 1, w)
        ramp_end = min(p + n, w)  # positions < w see qpos + 1 keys
        ramp = max(0, ramp_end - p)
        ramp_pairs = (ramp * (p + 1 + ramp_end)) // 2 if ramp else 0
        return self.batch * (ramp_pairs + (n - ramp) * w)

    def hidden(self, rows: torch.Tensor) -> torch.Tensor:
        """[rows, kv_length] bool: keys that suffix rows `rows` do not see."""
        keys = torch.arange(self.kv_length, device="cuda")[None, :]
        qpos = (self.prefix + rows)[:, None]
        hidden = keys > qpos
        if self.window > 0:
            hidden |= keys <= qpos - self.window
        return hidden

    def flops(self) -> float:
        return 4.0 * self.heads * self.visible_pairs() * self.head_dim

    def bytes(self) -> float:
        e = torch.finfo(DTYPE).bits // 8
        q_and_o = 2 * self.batch * self.new_tokens * self.heads * self.head_dim * e
        kv = 2 * self.batch * self.kv_length * self.kv_heads * self.head_dim * e
        return float(q_and_o + kv)


def all_cases() -> List[Case]:
    return [
        Case("prefill 1024, d=512 (16/4)", 1, 1024, 1024, 16, 4, 512),
        Case("prefill 4096, d=512 (16/4)", 1, 4096, 4096, 16, 4, 512),
        Case("prefill 16384, d=512 (16/4)", 1, 16384, 16384, 16, 4, 512),
        Case("31B prefill 1024, d=512 (32/4)", 1, 1024, 1024, 32, 4, 512),
        Case("31B prefill 4096, d=512 (32/4)", 1, 4096, 4096, 32, 4, 512),
        Case("31B decode batch 1, kv 32768, d=512 (32/4)", 1, 1, 32768, 32, 4, 512),
        Case("31B decode batch 32, kv 4096, d=512 (32/4)", 32, 1, 4096, 32, 4, 512),
        Case("E4B prefill 4096, d=512 (8/2)", 1, 4096, 4096, 8, 2, 512),
        Case("E4B prefill 1024, d=512 (8/2)", 1, 1024, 1024, 8, 2, 512),
        Case("E2B prefill 1024, d=512 (8/1)", 1, 1024, 1024, 8, 1, 512),
        Case("26B prefill 1024, d=512 (16/2)", 1, 1024, 1024, 16, 2, 512),
        Case("chunk 512 new on 8192, d=512 (16/4)", 1, 512, 8192, 16, 4, 512),
        Case("decode batch 32, kv 4096, d=512 (16/4)", 32, 1, 4096, 16, 4, 512),
        Case("decode batch 1, kv 32768, d=512 (16/4)", 1, 1, 32768, 16, 4, 512),
        Case("decode batch 1, kv 131072, d=512 (16/4)", 1, 1, 131072, 16, 4, 512),
        Case("decode batch 8, 4 new, kv 8192, d=512 (16/4)", 8, 4, 8192, 16, 4, 512),
        Case("prefill 4096, d=128 (32/8)", 1, 4096, 4096, 32, 8, 128, 128 ** -0.5),
        Case("prefill 16384, d=128 (32/8)", 1, 16384, 16384, 32, 8, 128, 128 ** -0.5),
        Case("prefill 4096, d=256 (16/8)", 1, 4096, 4096, 16, 8, 256, 256 ** -0.5),
        Case("prefill 16384, d=256 (16/8)", 1, 16384, 16384, 16, 8, 256, 256 ** -0.5),
        Case("chunk 512 new on 8192, d=256 (16/8)", 1, 512, 8192, 16, 8, 256, 256 ** -0.5),
        Case("sliding 8192, window 1024, d=256 (32/16)", 1, 8192, 8192, 32, 16, 256, 1.0, 1024),
        Case("sliding 8192, window 1024, d=256 (16/8)", 1, 8192, 8192, 16, 8, 256, 1.0, 1024),
    ]


QUICK = ("prefill 1024, d=512 (16/4)", "chunk 512 new on 8192, d=512 (16/4)",
         "decode batch 32, kv 4096, d=512 (16/4)", "decode batch 1, kv 32768, d=512 (16/4)",
         "prefill 4096, d=128 (32/8)")

PEERS = ("wideattn", "wideattn_direct", "eager", "sdpa_mem_efficient_repeat_kv", "sdpa_cudnn", "sdpa_flash", "flex")


# ---- timing ---------------------------------------------------------------------------------

def time_ms(fn: Callable[[], object], budget_ms: float, min_iters: int = 5, max_iters: int = 200) -> float:
    """Median of per-call CUDA event timings after warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    estimate = max((time.perf_counter() - t0) * 1e3, 1e-3)
    iters = int(min(max_iters, max(min_iters, budget_ms / estimate)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def matmul_ceiling(budget_ms: float, n: int = 8192) -> float:
    """TFLOP/s of an n^3 bf16 torch.matmul on random data."""
    a = torch.randn(n, n, device="cuda", dtype=DTYPE)
    b = torch.randn(n, n, device="cuda", dtype=DTYPE)
    ms = time_ms(lambda: torch.matmul(a, b), budget_ms)
    return 2.0 * n ** 3 / (ms * 1e-3) / 1e12


def copy_ceiling(budget_ms: float, nbytes: int = 1 << 30) -> float:
    """GB/s of a device-to-device copy, bytes read plus bytes written."""
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), budget_ms)
    return 2.0 * nbytes / (ms * 1e-3) / 1e9


def ceilings(budget_ms: float) -> Dict[str, float]:
    result = {"matmul_bf16_tflops": matmul_ceiling(budget_ms), "copy_gbs": copy_ceiling(budget_ms)}
    torch.cuda.empty_cache()
    return result


# ---- inputs ---------------------------------------------------------------------------------

class Inputs:
    """One case's tensors: wideattn's token-major cache and the peers' head-major layouts, in
    `copies` rotating sets (so a cache smaller than a few L2s does not stay cached)."""

    def __init__(self, case: Case, copies: int, need_repeat: bool) -> None:
        B, n, L, H, KV, d = case.batch, case.new_tokens, case.kv_length, case.heads, case.kv_heads, case.head_dim
        amplitude = d ** -0.25 if case.scale == 1.0 else 1.0  # logits of order 1
        g = torch.Generator(device="cuda").manual_seed(0)
        self.q = (amplitude * torch.randn(B * n, H, d, device="cuda", generator=g)).to(DTYPE)
        self.q_heads = self.q.view(B, n, H, d).transpose(1, 2).contiguous()  # [B, H, n, d]
        self.caches = []
        for _ in range(copies):
            k = (amplitude * torch.randn(B, L, KV, d, device="cuda", generator=g)).to(DTYPE)
            v = torch.randn(B, L, KV, d, device="cuda", generator=g).to(DTYPE)
            kh, vh = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()  # [B, KV, L, d]
            rep = None
            if need_repeat:
                group = H // KV
                rep = (kh.repeat_interleave(group, dim=1), vh.repeat_interleave(group, dim=1))
            self.caches.append({"k": k, "v": v, "kh": kh, "vh": vh, "rep": rep})
        self.out = torch.empty_like(self.q)
        self.query_offsets = [i * n for i in range(B + 1)]
        self.kv_lengths = [L] * B
        self.turn = 0

    def next(self) -> dict:
        c = self.caches[self.turn % len(self.caches)]
        self.turn += 1
        return c


def reference_rows(case: Case, inputs: Inputs, rows: torch.Tensor) -> torch.Tensor:
    """fp32 attention of sequence 0's suffix rows `rows` (indices in [0, n)): [r, H, d]."""
    c = inputs.caches[0]
    H, KV, d, L = case.heads, case.kv_heads, case.head_dim, case.kv_length
    r = rows.numel()
    q = inputs.q[rows].float().view(r, KV, H // KV, d)  # sequence 0 owns q rows [0, n)
    k = c["k"][0, :L].float()  # [L, KV, d]
    v = c["v"][0, :L].float()
    scores = torch.einsum("rkgd,lkd->kgrl", q, k) * case.scale
    scores.masked_fill_(case.hidden(rows), float("-inf"))
    out = torch.einsum("kgrl,lkd->rkgd", torch.softmax(scores, dim=-1), v)
    return out.reshape(r, H, d)


def sample_rows(case: Case) -> torch.Tensor:
    n = case.new_tokens
    budget = max(1, (1 << 28) // (case.heads * case.kv_length * 4))  # <= 256 MiB of scores
    count = min(n, 64, budget)
    return torch.unique(torch.linspace(0, n - 1, count, device="cuda").round().long())


# ---- peers ----------------------------------------------------------------------------------

class NoKernel(Exception):
    pass


def make_peer(name: str, case: Case, inputs: Inputs):
    """A callable running one iteration (returning the output as [B, n, H, d] or token-major
    [B*n, H, d]), or raises NoKernel / another exception."""
    B, n, L, H, KV, d = case.batch, case.new_tokens, case.kv_length, case.heads, case.kv_heads, case.head_dim
    scale = case.scale
    prefix = L - n

    if name == "wideattn":
        def run():
            c = inputs.next()
            return wideattn.attention(inputs.q, c["k"], c["v"], query_offsets=inputs.query_offsets,
                                      kv_lengths=inputs.kv_lengths, out=inputs.out, scale=scale,
                                      window=case.window)
        return run, "token"

    if name == "wideattn_direct":  # the extension without the PyTorch operator's dispatch
        from wideattn import _api

        def run():
            c = inputs.next()
            _api.attention_into(inputs.q, c["k"], c["v"], inputs.out, None, inputs.query_offsets,
                                inputs.kv_lengths, True, case.window, 0, 0, None, None, 0.0, scale, "auto")
            return inputs.out
        return run, "token"

    if name == "eager":
        group = H // KV
        hidden = None
        if n > 1 or case.window > 0:
            hidden = case.hidden(torch.arange(n, device="cuda"))

        def run():
            c = inputs.next()
            qg = inputs.q_heads.view(B, KV, group * n, d)
            s = torch.matmul(qg, c["kh"].transpose(-1, -2)) * scale  # [B, KV, G*n, L]
            if hidden is not None:
                s.view(B, KV, group, n, L).masked_fill_(hidden, float("-inf"))
            p = torch.softmax(s.float(), dim=-1).to(DTYPE)
            return torch.matmul(p, c["vh"]).view(B, H, n, d)
        return run, "heads"

    if name.startswith("sdpa"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {"sdpa_mem_efficient_repeat_kv": SDPBackend.EFFICIENT_ATTENTION,
                   "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
                   "sdpa_flash": SDPBackend.FLASH_ATTENTION}[name]
        mask_kwargs: dict = {}
        if case.window > 0:
            mask_kwargs = {"attn_mask": ~case.hidden(torch.arange(n, device="cuda"))}
        elif n == L:
            mask_kwargs = {"is_causal": True}
        elif n > 1:
            from torch.nn.attention.bias import causal_lower_right
            mask_kwargs = {"attn_mask": causal_lower_right(n, L)}
        # mem-efficient gets K/V repeated per query head (its GQA path stops at 256); cuDNN and
        # flash try their own GQA first, then repeated K/V.
        tries = (True,) if name == "sdpa_mem_efficient_repeat_kv" else (False, True)
        failure = ""
        for repeat in tries:
            def run(repeat=repeat):
                c = inputs.next()
                k, v = (c["rep"] if repeat else (c["kh"], c["vh"]))
                with sdpa_kernel([backend]):
                    return F.scaled_dot_product_attention(inputs.q_heads, k, v, scale=scale,
                                                          enable_gqa=not repeat, **mask_kwargs)
            try:
                run()
                if repeat and len(tries) > 1:
                    run.note = "K/V repeated"
                return run, "heads"
            except RuntimeError as error:
                if not any(m in str(error) for m in ("No available kernel", "No viable backend")):
                    raise
                failure = str(error).splitlines()[0]
        raise NoKernel(failure)

    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        window = case.window

        def causal(b, h, q_idx, kv_idx):
            visible = q_idx + prefix >= kv_idx
            if window > 0:
                visible = visible & (q_idx + prefix - kv_idx < window)
            return visible

        # One compilation per case and tile choice: past dynamo's recompile limit flex_attention
        # would silently run an unfused fallback.
        for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, max(256, getattr(torch._dynamo.config, limit)))
        block_mask = create_block_mask(causal, B=None, H=None, Q_LEN=n, KV_LEN=L, device="cuda")
        compiled = torch.compile(flex_attention, dynamic=False)
        last_error: Optional[BaseException] = None
        for options in (None, {"BLOCK_M": 64, "BLOCK_N": 64}, {"BLOCK_M": 32, "BLOCK_N": 32}):
            def run(options=options):
                c = inputs.next()
                return compiled(inputs.q_heads, c["kh"], c["vh"], block_mask=block_mask, scale=scale,
                                enable_gqa=True, kernel_options=options)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    run()
                torch.cuda.synchronize()
                if any("without torch.compile" in str(w.message) for w in caught):
                    raise RuntimeError("flex_attention fell back to its unfused implementation")
                run.note = "default tiles" if options is None else f"{options['BLOCK_M']}x{options['BLOCK_N']} tiles"
                return run, "heads"
            except Exception as error:  # Triton out of resources, compile errors
                last_error = error
                torch.cuda.empty_cache()
        raise RuntimeError(f"flex_attention failed with every tile choice: {str(last_error).splitlines()[0][:200]}")

    raise ValueError(f"unknown peer {name}")


def token_major(case: Case, result: torch.Tensor, layout: str) -> torch.Tensor:
    """Sequence 0's rows as [n, H, d]."""
    if layout == "token":
        return result[: case.new_tokens]
    return result[0].transpose(0, 1)


# ---- driver ---------------------------------------------------------------------------------

def run_case(case: Case, peers: List[str], budget_ms: float, l2_bytes: int) -> Dict[str, dict]:
    kv_bytes = 2 * case.batch * case.kv_length * case.kv_heads * case.head_dim * 2
    copies = max(1, min(4, math.ceil(3 * l2_bytes / kv_bytes))) if case.decode else 1
    inputs = Inputs(case, copies, need_repeat=any(p.startswith("sdpa") for p in peers))
    rows = sample_rows(case)
    reference = reference_rows(case, inputs, rows)
    ref_scale = reference.abs().max().item()
    results: Dict[str, dict] = {}
    for name in peers:
        entry: dict = {}
        try:
            fn, layout = make_peer(name, case, inputs)
            inputs.turn = 0
            got = token_major(case, fn(), layout)[rows].float()
            torch.cuda.synchronize()
            error = (got - reference).abs().max().item() / max(ref_scale, 1e-6)
            entry["relative_error"] = error
            entry["correct"] = bool(error < 2e-2)
            if getattr(fn, "note", None):
                entry["note"] = fn.note
            ms = time_ms(fn, budget_ms)
            entry["ms"] = ms
            if case.decode:
                entry["gbs"] = case.bytes() / (ms * 1e-3) / 1e9
            else:
                entry["tflops"] = case.flops() / (ms * 1e-3) / 1e12
        except NoKernel as error:
            entry = {"status": "no kernel", "detail": str(error)[:200]}
        except torch.cuda.OutOfMemoryError:
            entry = {"status": "out of memory"}
        except Exception as error:  # a peer failing is a result, not the end of the run
            entry = {"status": "failed", "detail": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            if os.environ.get("PEERS_TRACEBACK"):
                traceback.print_exc()
        results[name] = entry
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        print(f"  {name:30s} {describe(case, entry)}", flush=True)
    if "wideattn" in peers:
        plan = wideattn.plan(inputs.q, inputs.caches[0]["k"], inputs.caches[0]["v"],
                             query_offsets=inputs.query_offsets, kv_lengths=inputs.kv_lengths,
                             scale=case.scale, window=case.window)
        results["wideattn"]["plan"] = f"{plan.kernel}, {plan.num_splits} split(s)"
    del inputs
    torch.cuda.empty_cache()
    return results


def describe(case: Case, entry: dict, ceil: Optional[Dict[str, float]] = None) -> str:
    if "status" in entry:
        return entry["status"]
    if case.decode:
        text = f"{entry['gbs']:.0f} GB/s"
        if ceil:
            text += f" ({100 * entry['gbs'] / ceil['copy_gbs']:.0f}%)"
    else:
        text = f"{entry['tflops']:.1f} TF/s"
        if ceil:
            text += f" ({100 * entry['tflops'] / ceil['matmul_bf16_tflops']:.1f}%)"
    if not entry.get("correct", True):
        text += f" WRONG (rel. error {entry['relative_error']:.2g})"
    if entry.get("note"):
        text += f" [{entry['note']}]"
    return text


def write_outputs(outdir: str, meta: dict, cases: List[Case], results: Dict[str, Dict[str, dict]],
                  peers: List[str]) -> None:
    os.makedirs(outdir, exist_ok=True)
    ceil = meta["ceilings"]
    with open(os.path.join(outdir, "peers.json"), "w") as f:
        json.dump({"meta": meta, "cases": [asdict(c) | {"decode": c.decode} for c in cases],
                   "results": results}, f, indent=2)
    lines = [
        f"# wideattn and PyTorch peers: {meta['device']}",
        "",
        f"PyTorch {meta['torch']}, CUDA {meta['cuda']}, wideattn {meta['wideattn']}, bf16. "
        f"Ceilings in the same run: 8192^3 bf16 matmul {ceil['matmul_bf16_tflops']:.0f} TFLOP/s; "
        f"device-to-device copy {ceil['copy_gbs']:.0f} GB/s (read + written).",
        "Prefill: TFLOP/s of visible causal pairs (4 * heads * pairs * head_dim), % of the matmul "
        "ceiling. Decode: GB/s of Q, K, V read and O written, % of the copy ceiling. "
        "Median of CUDA-event timings. SDPA mem-efficient gets K/V already repeated per query head "
        "(the repeat is not timed).",
        "",
        "| case (heads q/kv) | " + " | ".join(peers) + " | wideattn plan |",
        "|---|" + "---|" * (len(peers) + 1),
    ]
    for case in cases:
        row = results[case.name]
        cells = [describe(case, row.get(p, {"status": "-"}), ceil) for p in peers]
        lines.append(f"| {case.name} | " + " | ".join(cells) + f" | {row.get('wideattn', {}).get('plan', '-')} |")
    with open(os.path.join(outdir, "peers.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (peers.md and peers.json are written)")
        return
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(cases)), 5))
    width = 0.8 / len(peers)
    for i, p in enumerate(peers):
        values = []
        for case in cases:
            e = results[case.name].get(p, {})
            if "ms" not in e:
                values.append(0.0)
            elif case.decode:
                values.append(100 * e["gbs"] / ceil["copy_gbs"])
            else:
                values.append(100 * e["tflops"] / ceil["matmul_bf16_tflops"])
        ax.bar([x + i * width for x in range(len(cases))], values, width, label=p)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(cases))])
    ax.set_xticklabels([c.name for c in cases], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("% of ceiling (prefill: matmul TFLOP/s; decode: copy GB/s)")
    ax.set_title(f"wideattn vs PyTorch peers, {meta['device']} (0 = no kernel / failed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "peers.png"), dpi=120)
    print(f"chart: {os.path.join(outdir, 'peers.png')}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--quick", action="store_true", help="a few cases, short timings")
    parser.add_argument("--cases", default="", help="comma-separated substrings of case names")
    parser.add_argument("--skip", default="", help="comma-separated substrings of case names to leave out")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, of {','.join(PEERS)}")
    parser.add_argument("--budget-ms", type=float, default=None, help="timed milliseconds per measurement")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("peers.py needs a CUDA GPU")
        return 2
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}")
    if any(p.startswith("wideattn") for p in peers):
        if wideattn is None:
            print(f"the wideattn peers need the package: {_WIDEATTN_IMPORT_ERROR}")
            return 2
        if not wideattn.backend_available("cuda")[0]:
            print(f"wideattn has no CUDA backend here: {wideattn.backend_available('cuda')[1]}")
            return 2
    cases = all_cases()
    if args.quick:
        cases = [c for c in cases if c.name in QUICK]
    if args.cases:
        wanted = [w.strip() for w in args.cases.split(",") if w.strip()]
        cases = [c for c in cases if any(w in c.name for w in wanted)]
    if args.skip:
        unwanted = [w.strip() for w in args.skip.split(",") if w.strip()]
        cases = [c for c in cases if not any(w in c.name for w in unwanted)]
    budget = args.budget_ms or (100.0 if args.quick else 300.0)
    props = torch.cuda.get_device_properties(0)
    l2_bytes = getattr(props, "L2_cache_size", 50 << 20)
    print(f"device {props.name}; measuring ceilings ...", flush=True)
    ceil = ceilings(budget)
    print(f"ceilings: matmul {ceil['matmul_bf16_tflops']:.0f} TFLOP/s, copy {ceil['copy_gbs']:.0f} GB/s", flush=True)
    meta = {"device": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "wideattn": wideattn.__version__ if wideattn else "not loaded", "python": platform.python_version(),
            "ceilings": ceil, "budget_ms": budget, "argv": sys.argv[1:]}
    results: Dict[str, Dict[str, dict]] = {}
    for case in cases:
        print(f"{case.name}:", flush=True)
        results[case.name] = run_case(case, peers, budget, l2_bytes)
        write_outputs(args.outdir, meta, [c for c in cases if c.name in results], results, peers)
    print(open(os.path.join(args.outdir, "peers.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
