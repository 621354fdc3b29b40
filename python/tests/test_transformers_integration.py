"""Hugging Face transformers integration (wideattn.transformers_integration): attn_implementation=
"wideattn" against transformers' own eager attention, in f32 on the CPU.

The model is a tiny random-weight Gemma 4 text model built from transformers' Gemma4TextConfig
(no download): sliding layers (head_dim 32, sliding_window 6) and global layers at head_dim 512
(Gemma 4's global_head_dim), prompts longer than the window, so that a wrong or ignored window
changes the logits (test_window_changes_the_logits checks that it does, by a wide margin). Logits
are compared within 1e-4 of their largest magnitude; greedy generations (prefill, then cached
decode steps) token for token; padded batches at their non-padding positions.

Skipped when PyTorch or transformers is not installed, or when the installed transformers has no
Gemma 4 (Gemma4TextConfig / Gemma4ForCausalLM); the GPT-OSS (attention sinks) test when it has no
GPT-OSS.
"""

from __future__ import annotations

import copy
import inspect

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

try:
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig
except ImportError:  # pragma: no cover - depends on the installed transformers
    pytest.skip(f"transformers {transformers.__version__} has no Gemma 4 "
                "(Gemma4TextConfig/Gemma4ForCausalLM)", allow_module_level=True)

from wideattn import transformers_integration as wti  # noqa: E402  (registers "wideattn")

TOLERANCE = 1e-4  # max |wideattn - eager| / max |eager| on f32 logits
WINDOW = 6
PROMPT = 20  # > WINDOW: the sliding layers' window hides keys
NEW_TOKENS = 8
LAYERS = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]


def gemma4_config(**overrides):
    settings = dict(vocab_size=128, hidden_size=64, intermediate_size=96,
                    num_hidden_layers=len(LAYERS), layer_types=list(LAYERS),
                    num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                    global_head_dim=512, sliding_window=WINDOW, hidden_size_per_layer_input=8,
                    vocab_size_per_layer_input=128, max_position_embeddings=256)
    settings.update(overrides)
    return Gemma4TextConfig(**settings)


def model_pair(config, model_class=None, seed=0):
    """(eager, wideattn) copies of one seeded random-weight model, f32, eval mode. Each has its own
    config object: the attention implementation is set on the config."""
    model_class = model_class or Gemma4ForCausalLM
    torch.manual_seed(seed)
    eager = model_class(copy.deepcopy(config)).eval()
    eager.set_attn_implementation("eager")
    ours = model_class(copy.deepcopy(config)).eval()
    ours.load_state_dict(eager.state_dict())
    ours.set_attn_implementation("wideattn")
    assert eager.config._attn_implementation == "eager"
    assert ours.config._attn_implementation == "wideattn"
    return eager, ours


def relative_error(ours, reference):
    return float((ours - reference).abs().max() / reference.abs().max())


def prompts(batch=1, length=PROMPT, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 128, (batch, length), generator=generator)


@pytest.fixture(scope="module")
def models():
    return model_pair(gemma4_config())


class CountCalls:
    """Counts wideattn.attention calls made by the integration (proves the model used it)."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = wti._attention

        def counted(q, *args, **kwargs):
            self.calls.append((tuple(q.shape), kwargs.get("window"), kwargs.get("kv_lengths")))
            return original(q, *args, **kwargs)

        monkeypatch.setattr(wti, "_attention", counted)


def test_model_has_sliding_and_512_wide_global_layers(models):
    _, ours = models
    kinds = [(layer.self_attn.layer_type, layer.self_attn.head_dim, layer.self_attn.sliding_window)
             for layer in ours.model.layers]
    assert ("sliding_attention", 32, WINDOW) in kinds
    assert ("full_attention", 512, None) in kinds
    assert WINDOW < PROMPT


def test_prefill_logits_match_eager(models, monkeypatch):
    eager, ours = models
    ids = prompts(batch=2)
    counter = CountCalls(monkeypatch)
    with torch.no_grad():
        reference = eager(ids).logits
        logits = ours(ids).logits
    assert relative_error(logits, reference) < TOLERANCE
    # One batched call per layer (no padding), the sliding layers with wideattn window 6, the
    # global ones at head_dim 512.
    assert len(counter.calls) == len(LAYERS)
    assert {(shape[2], window) for shape, window, _ in counter.calls} == {(32, WINDOW), (512, 0)}


def test_window_changes_the_logits(models):
    """Without the window the logits move far beyond the tolerance: the comparisons above would
    catch a window that was ignored or off by one."""
    eager, _ = models
    name = "wideattn_test_no_window"

    def no_window(module, query, key, value, attention_mask, **kwargs):
        kwargs["sliding_window"] = None
        return wti.attention_forward(module, query, key, value, None, **kwargs)

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(name, no_window)
    AttentionMaskInterface.register(name, wti.build_mask)
    try:
        for window in (None, WINDOW - 1, WINDOW + 1):
            wrong = copy.deepcopy(eager)
            if window is None:
                wrong.set_attn_implementation(name)
            else:
                wrong.config.sliding_window = window  # the eager mask with a window off by one
                for layer in wrong.model.layers:
                    if layer.self_attn.sliding_window is not None:
                        layer.self_attn.sliding_window = window
            with torch.no_grad():
                assert relative_error(wrong(prompts()).logits, eager(prompts()).logits) > 100 * TOLERANCE
    finally:
        AttentionInterface._global_mapping.pop(name, None)
        AttentionMaskInterface._global_mapping.pop(name, None)


def test_greedy_generation_matches_eager(models, monkeypatch):
    eager, ours = models
    ids = prompts()
    expected = eager.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True)
    counter = CountCalls(monkeypatch)
    generated = ours.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True)
    assert generated.shape == (1, PROMPT + NEW_TOKENS)
    assert generated.tolist() == expected.tolist()
    # Prefill, then one-token decode steps over the cache: the sliding layers' cache holds the
    # last WINDOW - 1 keys plus the new one, the global layers' all of them.
    decode = [(kv, window) for shape, window, kv in counter.calls if shape[0] == 1]
    assert (kv_lengths := {tuple(kv) for kv, window in decode if window == WINDOW}) == {(WINDOW,)}, kv_lengths
    assert max(kv[0] for kv, window in decode if window == 0) == PROMPT + NEW_TOKENS - 1


def test_cached_logits_match_eager(models):
    """A prompt in two chunks (the second attends to the cache of the first) and a decode step."""
    eager, ours = models
    ids = prompts(length=PROMPT + 7)
    # transformers 5.x renamed past_key_values to cache (in and out).
    name = "cache" if "cache" in inspect.signature(ours.forward).parameters else "past_key_values"
    results = []
    for model in (eager, ours):
        with torch.no_grad():
            first = model(ids[:, :PROMPT], use_cache=True)
            second = model(ids[:, PROMPT:-1], use_cache=True, **{name: getattr(first, name)})
            third = model(ids[:, -1:], use_cache=True, **{name: getattr(second, name)})
        results.append(torch.cat([first.logits, second.logits, third.logits], dim=1))
    assert relative_error(results[1], results[0]) < TOLERANCE


def padded_batch(side):
    ids = prompts(batch=2, seed=3)
    mask = torch.ones_like(ids)
    if side == "left":
        ids[1, :7], mask[1, :7] = 0, 0
    else:
        ids[0, PROMPT - 5:], mask[0, PROMPT - 5:] = 0, 0
    return ids, mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_logits_match_eager(models, side):
    eager, ours = models
    ids, mask = padded_batch(side)
    with torch.no_grad():
        reference = eager(ids, attention_mask=mask).logits
        logits = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    assert relative_error(logits[real], reference[real]) < TOLERANCE


def test_padded_batch_generation_matches_eager(models):
    eager, ours = models
    ids, mask = padded_batch("left")
    expected = eager.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)
    generated = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert generated.tolist() == expected.tolist()


def test_static_cache_generation_matches_eager(models):
    """StaticCache: keys include unwritten slots, masked; sliding layers roll their window."""
    eager, ours = models
    ids, mask = padded_batch("left")
    kwargs = dict(attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                  cache_implementation="static")
    assert ours.generate(ids, **kwargs).tolist() == eager.generate(ids, **kwargs).tolist()


def test_mask_that_is_not_padding_raises(models):
    _, ours = models
    ids = prompts(batch=2)
    mask = torch.ones_like(ids)
    mask[0, 5] = 0  # a hole: not left or right padding
    with pytest.raises(ValueError, match="attention_mask"):
        with torch.no_grad():
            ours(ids, attention_mask=mask)


@pytest.mark.parametrize("variant", ["kv_sharing_k_eq_v", "bidirectional"])
def test_gemma4_variants_match_eager(variant):
    """E2B-style KV sharing plus the large models' attention_k_eq_v (one global KV head whose
    value is its key); and use_bidirectional_attention="all" (bidirectional sliding windows)."""
    if variant == "kv_sharing_k_eq_v":
        layers = LAYERS + ["sliding_attention", "full_attention"]
        config = gemma4_config(num_hidden_layers=len(layers), layer_types=layers,
                               num_kv_shared_layers=2, attention_k_eq_v=True,
                               num_global_key_value_heads=1)
    else:
        config = gemma4_config(use_bidirectional_attention="all")
    eager, ours = model_pair(config)
    ids, mask = padded_batch("left")
    with torch.no_grad():
        reference = eager(ids, attention_mask=mask).logits
        logits = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    assert relative_error(logits[real], reference[real]) < TOLERANCE
    if variant == "kv_sharing_k_eq_v":
        kwargs = dict(attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)
        assert ours.generate(ids, **kwargs).tolist() == eager.generate(ids, **kwargs).tolist()


def test_gpt_oss_sinks_match_eager():
    """Attention sinks (s_aux) and sliding windows, from GPT-OSS's own eager attention."""
    try:
        from transformers import GptOssConfig, GptOssForCausalLM
    except ImportError:
        pytest.skip(f"transformers {transformers.__version__} has no GPT-OSS")
    config = GptOssConfig(vocab_size=128, hidden_size=64, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, sliding_window=5, num_local_experts=4,
                          num_experts_per_tok=2, layer_types=["sliding_attention", "full_attention"])
    eager, ours = model_pair(config, GptOssForCausalLM)
    with torch.no_grad():
        for model in (eager, ours):  # sinks large enough to matter
            for i, layer in enumerate(model.model.layers):
                layer.self_attn.sinks.copy_(torch.linspace(-1.0, 2.0, 4) + i)
    ids, mask = padded_batch("left")
    with torch.no_grad():
        reference = eager(ids, attention_mask=mask).logits
        logits = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    assert relative_error(logits[real], reference[real]) < TOLERANCE
    kwargs = dict(attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert ours.generate(ids, **kwargs).tolist() == eager.generate(ids, **kwargs).tolist()


# ---------------------------------------------------------------------------------------------
# The attention function alone, against Gemma 4's eager attention function and transformers'
# own masks.


class Layer(torch.nn.Module):
    def __init__(self, heads, kv_heads, head_dim, causal=True):
        super().__init__()
        self.num_key_value_groups = heads // kv_heads
        self.head_dim = head_dim
        self.is_causal = causal


def eager_attention(*args, **kwargs):
    from transformers.models.gemma4.modeling_gemma4 import eager_attention_forward
    return eager_attention_forward(*args, **kwargs)


def transformers_mask(batch, q_len, kv_len, window, padding=None, causal=True):
    """transformers' boolean mask for queries at the last q_len of kv_len positions."""
    from transformers import masking_utils as mu
    if causal:
        function = (mu.causal_mask_function if window is None
                    else mu.sliding_window_causal_mask_function(window))
    else:
        function = (mu.bidirectional_mask_function if window is None
                    else mu.sliding_window_bidirectional_mask_function(window))
    return wti.build_mask(batch_size=batch, q_length=q_len, kv_length=kv_len,
                          q_offset=kv_len - q_len, kv_offset=0, mask_function=function,
                          attention_mask=padding, allow_is_causal_skip=False)


@pytest.mark.parametrize("q_len,kv_len", [(9, 9), (1, 13), (4, 13)])
@pytest.mark.parametrize("window", [None, 1, 3, 7])
@pytest.mark.parametrize("causal", [True, False])
def test_window_semantics_match_transformers_masks(q_len, kv_len, window, causal):
    """transformers' sliding_window (causal: i - w < j <= i; bidirectional: |i - j| <= w) maps to
    wideattn's window, with the mask given (read back) and without it (the layer's pattern)."""
    heads, kv_heads, d = 4, 2, 24
    generator = torch.Generator().manual_seed(q_len * 100 + kv_len + (window or 0))
    q = torch.randn(2, heads, q_len, d, generator=generator)
    k = torch.randn(2, kv_heads, kv_len, d, generator=generator)
    v = torch.randn(2, kv_heads, kv_len, d, generator=generator)
    layer = Layer(heads, kv_heads, d, causal)
    mask = transformers_mask(2, q_len, kv_len, window, causal=causal)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    reference, _ = eager_attention(layer, q, k, v, additive, scaling=0.3)
    for given in (mask, additive, None):
        out, weights = wti.attention_forward(layer, q, k, v, given, scaling=0.3,
                                             sliding_window=window)
        assert weights is None and out.shape == (2, q_len, heads, d)
        assert relative_error(out, reference) < 1e-5, given


def test_softcap_scaling_and_bf16():
    layer = Layer(8, 2, 64)
    generator = torch.Generator().manual_seed(5)
    q = torch.randn(1, 8, 5, 64, generator=generator)
    k = torch.randn(1, 2, 11, 64, generator=generator)
    v = torch.randn(1, 2, 11, 64, generator=generator)
    mask = transformers_mask(1, 5, 11, 4)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    reference, _ = eager_attention(layer, q, k, v, additive, scaling=0.5, softcap=3.0)
    out, _ = wti.attention_forward(layer, q, k, v, None, scaling=0.5, softcap=3.0, sliding_window=4)
    assert relative_error(out, reference) < 1e-5
    bf16 = [x.to(torch.bfloat16) for x in (q, k, v)]
    out, _ = wti.attention_forward(layer, *bf16, None, scaling=0.5, softcap=3.0, sliding_window=4)
    assert out.dtype == torch.bfloat16 and relative_error(out.float(), reference) < 2e-2


def test_padding_layouts():
    """The mask read back: left padding, right padding, no padding (None: one batched call)."""
    padding = torch.ones(3, 10, dtype=torch.bool)
    padding[1, :4] = False   # left
    padding[2, 7:] = False   # right
    mask = transformers_mask(3, 10, 10, None, padding=padding)
    assert wti.sequence_layout(mask, 3, 10, 10) == [(0, 10, 0, 10), (4, 10, 4, 10), (0, 7, 0, 7)]
    decode = transformers_mask(3, 1, 10, None, padding=padding[:, :10])
    assert wti.sequence_layout(decode, 3, 1, 10)[1] == (4, 10, 0, 1)
    assert wti.sequence_layout(transformers_mask(3, 10, 10, 3), 3, 10, 10, True, 3) is None
    with pytest.raises(ValueError, match="sliding_window=4"):  # the mask has window 3
        wti.sequence_layout(transformers_mask(3, 10, 10, 3), 3, 10, 10, True, 4)
    assert wti.build_mask(batch_size=3, q_length=10, kv_length=10, q_offset=0, kv_offset=0,
                          attention_mask=torch.ones(3, 10, dtype=torch.bool)) is None

    # Padding query rows give zeros; real rows match eager.
    layer = Layer(4, 4, 16)
    generator = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(3, 4, 10, 16, generator=generator) for _ in range(3))
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    reference, _ = eager_attention(layer, q, k, v, additive)
    out, _ = wti.attention_forward(layer, q, k, v, mask)
    assert torch.all(out[1, :4] == 0) and torch.all(out[2, 7:] == 0)
    assert relative_error(out[padding], reference[padding]) < 1e-5


def test_errors_name_the_argument():
    layer = Layer(4, 2, 16)
    q = torch.randn(1, 4, 6, 16)
    k = v = torch.randn(1, 2, 6, 16)
    mask = transformers_mask(1, 6, 6, None)
    bias = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    bias[..., 0] = -0.5  # an additive bias, not a mask
    with pytest.raises(ValueError, match="attention_mask holds additive biases"):
        wti.attention_forward(layer, q, k, v, bias)
    with pytest.raises(ValueError, match="attention_mask"):
        wti.attention_forward(layer, q, k, v, mask[:, :, :, :4])
    packed = mask.clone()
    packed[..., 3:, :3] = False  # two packed sequences of 3
    with pytest.raises(ValueError, match="per-sequence lengths"):
        wti.attention_forward(layer, q, k, v, packed)
    with pytest.raises(NotImplementedError, match="dropout"):
        wti.attention_forward(layer, q, k, v, None, dropout=0.1)
    with pytest.raises(ValueError, match="s_aux"):
        wti.attention_forward(layer, q, k, v, None, s_aux=torch.zeros(3))


def test_register_under_another_name():
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    name = "wideattn_test_alias"
    try:
        assert wti.register_transformers(name) == name
        assert AttentionInterface._global_mapping[name] is wti.attention_forward
        assert AttentionMaskInterface._global_mapping[name] is wti.build_mask
    finally:
        AttentionInterface._global_mapping.pop(name, None)
        AttentionMaskInterface._global_mapping.pop(name, None)
