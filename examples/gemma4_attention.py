"""Replace the attention of a Gemma-4-style global layer (head_dim 512, 8 query / 2 KV heads,
scale 1.0, per-head RMSNorm on q and k, RoPE, a KV cache) with wideattn.

    python3 examples/gemma4_attention.py        # GPU (bf16) when there is one, else the CPU (f32)

It prefills a prompt, decodes a few tokens, and checks each step against PyTorch's eager
matmul-softmax-matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import wideattn


def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 1_000_000.0) -> torch.Tensor:
    """Rotary embedding of x [tokens, heads, head_dim] at integer positions [tokens]."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * inv_freq[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    x1, x2 = x.float()[..., :half], x.float()[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class GlobalAttention(nn.Module):
    """One sequence's global attention layer with its own KV cache [1, capacity, kv_heads, d]."""

    def __init__(self, hidden: int = 1024, heads: int = 8, kv_heads: int = 2, head_dim: int = 512,
                 capacity: int = 4096, use_wideattn: bool = True) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6)
        self.register_buffer("k_cache", torch.zeros(1, capacity, kv_heads, head_dim), persistent=False)
        self.register_buffer("v_cache", torch.zeros(1, capacity, kv_heads, head_dim), persistent=False)
        self.length = 0  # tokens already in the cache
        self.use_wideattn = use_wideattn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [new_tokens, hidden] -> [new_tokens, hidden]; appends the new keys and values."""
        n = x.shape[0]
        start = self.length
        positions = torch.arange(start, start + n, device=x.device)
        q = rope(self.q_norm(self.q_proj(x).view(n, self.heads, self.head_dim)), positions)
        k = rope(self.k_norm(self.k_proj(x).view(n, self.kv_heads, self.head_dim)), positions)
        v = self.v_proj(x).view(n, self.kv_heads, self.head_dim)
        self.k_cache[0, start : start + n] = k
        self.v_cache[0, start : start + n] = v
        self.length += n
        if self.use_wideattn:
            out = wideattn.attention(q, self.k_cache, self.v_cache, query_offsets=[0, n],
                                     kv_lengths=[self.length], scale=1.0)
        else:
            out = self.eager_attention(q)
        return self.o_proj(out.reshape(n, self.heads * self.head_dim))

    def eager_attention(self, q: torch.Tensor) -> torch.Tensor:
        """The PyTorch path wideattn replaces: matmul, causal mask, softmax, matmul."""
        n, total = q.shape[0], self.length
        group = self.heads // self.kv_heads
        k = self.k_cache[0, :total].repeat_interleave(group, dim=1).transpose(0, 1)
        v = self.v_cache[0, :total].repeat_interleave(group, dim=1).transpose(0, 1)
        scores = q.transpose(0, 1).float() @ k.float().transpose(1, 2)  # scale 1.0
        query_pos = torch.arange(total - n, total, device=q.device)[:, None]
        scores = scores.masked_fill(torch.arange(total, device=q.device)[None, :] > query_pos, float("-inf"))
        return (F.softmax(scores, dim=-1) @ v.float()).to(q.dtype).transpose(0, 1)


def main() -> None:
    device = "cuda" if torch.cuda.is_available() and wideattn.backend_available("cuda")[0] else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    layer = GlobalAttention(capacity=1024).to(device, dtype)
    eager = GlobalAttention(capacity=1024, use_wideattn=False).to(device, dtype)
    eager.load_state_dict(layer.state_dict())

    prompt = torch.randn(300, 1024, device=device, dtype=dtype)
    steps = [prompt] + [torch.randn(1, 1024, device=device, dtype=dtype) for _ in range(4)]
    with torch.inference_mode():
        for i, x in enumerate(steps):
            ours, theirs = layer(x), eager(x)
            error = (ours.float() - theirs.float()).abs().max().item()
            scale = theirs.float().abs().max().item()
            what = f"prefill {x.shape[0]}" if i == 0 else f"decode step {i}"
            print(f"{what:>14}: max |wideattn - eager| = {error:.3g} (outputs up to {scale:.3g}), "
                  f"cache length {layer.length}, {device} {str(dtype).replace('torch.', '')}")
            assert error <= 0.05 * scale + 1e-3, "wideattn disagrees with the eager layer"
    q = torch.zeros(1, 8, 512, device=device, dtype=dtype)
    plan = wideattn.plan(q, layer.k_cache, layer.v_cache, query_offsets=[0, 1],
                         kv_lengths=[layer.length], scale=1.0)
    print(f"decode plan: {plan.kernel}, {plan.num_splits} split(s): {plan.reason}")


if __name__ == "__main__":
    main()
