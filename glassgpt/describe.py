"""The model's structure as the seed draws it (G2): each stage, its shapes and parameter count."""

from __future__ import annotations

from .model import GPT


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def describe(model: GPT) -> str:
    cfg = model.cfg
    blk = model.blocks[0]
    H, H_kv, d_head = cfg.n_heads, cfg.n_kv_heads, cfg.d_head
    family = "Llama style" if cfg.positions == "rope" else "GPT-2 style"
    total = model.num_params()
    heads = f"{H} heads" + (f" sharing {H_kv} key/value heads (grouped-query)" if H_kv != H else "")
    act = "SwiGLU" if cfg.mlp == "swiglu" else "GELU"
    norm = "RMSNorm" if cfg.norm == "rmsnorm" else "LayerNorm"
    pos = f"RoPE θ={cfg.rope_theta:g}" if cfg.positions == "rope" else f"learned W_pos {cfg.n_ctx}×{cfg.d_model}"
    emb = f"W_E {cfg.d_vocab}×{cfg.d_model}" + (f", {pos}" if cfg.positions == "learned" else "")
    unemb = "final norm, W_U = W_Eᵀ (tied)" if cfg.tie_embeddings else f"final norm, W_U {cfg.d_model}×{cfg.d_vocab}"
    attn_n, mlp_n = _n(blk.attn), _n(blk.mlp)
    norm_n = _n(blk.ln1) + _n(blk.ln2)
    rows = [
        ("tokens", f"(B, T) ids, T ≤ n_ctx = {cfg.n_ctx} (the context window, G11)", None),
        ("Embedding", emb, _n(model.embed)),
        (f"(Attention → MLP) × {cfg.n_layers}", f"{_n(model.blocks):,} parameters in all", None),
        ("  Attention", f"{heads}, d_head {d_head}; {pos if cfg.positions == 'rope' else 'causal mask'}", attn_n),
        ("    per head", f"W_Q, W_K, W_V {cfg.d_model}×{d_head}, W_O {d_head}×{cfg.d_model}; "
                        f"pattern {cfg.n_ctx}×{cfg.n_ctx} (T8)", None),
        ("  MLP", f"{cfg.d_model} → {cfg.d_mlp} → {cfg.d_model} ({act}, ×{cfg.d_mlp / cfg.d_model:g} wider, G5)", mlp_n),
        ("  norms", f"2 × {norm} (pre-norm), residual adds around each", norm_n),
        ("Unembedding", unemb, _n(model.unembed)),
        ("logits", f"(B, T, {cfg.d_vocab}) → softmax(logits / temperature) (G12)", None),
    ]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{cfg.name or 'model'} — {family}, {total:,} parameters", ""]
    for name, what, n in rows:
        count = f"{n:>14,}" if n is not None else " " * 14
        lines.append(f"{name:<{width}}{count}   {what}")
    lines.append("")
    lines.append(f"{'per block':<{width}}{attn_n + mlp_n + norm_n:>14,}")
    return "\n".join(lines)
