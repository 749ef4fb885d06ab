"""Train the tiny DeepSeek-V3 MoE that `make demo` and `make bench-quality` quantize.

    nice python -m quant.train_tiny [--steps N] [--out quant/data/tiny-moe] [--docs docs]

No MoE with real weights can be downloaded here, and a random one gives numbers that mean
nothing, so we train one on this machine's CPU, deterministically: fixed seeds, a fixed data
order, ``torch.use_deterministic_algorithms``, one thread. The architecture is DeepSeek-V3's at
toy size (``SPEC``): MLA, the first block dense, then MoE blocks of 16 routed experts + 1 shared
expert, sigmoid routing with the selection bias (noaux_tc, 4 groups, top-2 groups, top-4
experts), every weight row a multiple of 256 wide except the per-head ones (as in the real
model), so the K-quants apply without fallback. Six blocks put DQ3_K_M's layer pattern to work
(routed ``ffn_down`` Q6_K in blocks 3-4, Q3_K in 1, 2 and 5).

Data (offline, ships with Python): CPython's pydoc topics (``pydoc_data/topics.py``) and the
standard library's top-level sources. The first fifth of the topics text is the validation
split, never trained on: it is where ``quant.eval`` (the demo's benchmark, bench-quality)
scores every variant. The byte-level BPE (1,024 tokens) is trained on the training text.

The expert-selection bias is trained the aux-loss-free way (DeepSeek-V3 §2.1.2): after each
step it moves by ``BIAS_RATE`` towards balance (up for under-loaded experts, down for over-loaded).

Writes the checkpoint through ``quant.tiny.write_checkpoint`` (the same writer as the random
tiny model: config.json, tokenizer, BF16 safetensors), a loss-curve SVG and the measured numbers
(``docs/tiny-moe-training.json``): validation perplexity of the BF16 weights in our PyTorch
forward, a unigram model's on the same tokens, and with ``--check`` llama.cpp's on the F16 GGUF
that dsq converts (same tokens, same windows), the proof that our forward is what llama.cpp runs.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from quant.deepseek_torch import DeepSeekV3, MoE
from quant.eval.text import split_text, topics_text
from quant.tiny import BOS, EOS, PAD, TRAINED_DIR, TinySpec, config_dict, tensor_specs, tokenizer_files, write_checkpoint

REPO_ROOT = Path(__file__).parent.parent

SPEC = TinySpec(
    vocab_size=1024, hidden_size=256, intermediate_size=512, moe_intermediate_size=256,
    num_hidden_layers=6, first_k_dense_replace=1, num_attention_heads=2,
    q_lora_rank=256, kv_lora_rank=256, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
    n_routed_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2, n_shared_experts=1,
    routed_scaling_factor=2.5, num_nextn_predict_layers=0, n_merges=1024 - 256 - 3, seed=0,
    max_shard_bytes=256 << 20,
)
VALID_FRACTION = 0.2  # the head of the topics text: validation, never trained on
STDLIB_CHARS = 200_000  # how much standard-library source joins the training text
BIAS_RATE = 1e-3


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 200  # about 12 minutes on this shared 2-core machine (one thread, nice)
    batch: int = 2
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 10
    weight_decay: float = 0.1
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 25
    eval_windows: int = 8  # validation windows for the curve (the final figure uses all of them)
    bigram_init: bool = True


# -- data --------------------------------------------------------------------------------------------


def stdlib_text(limit: int = STDLIB_CHARS) -> str:
    """The standard library's top-level modules in name order, up to `limit` characters."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for f in sorted(lib.glob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace")
        parts.append(f"# {f.name}\n{text}\n")
        size += len(parts[-1])
        if size >= limit:
            break
    return "".join(parts)[:limit]


def corpus(stdlib_chars: int = STDLIB_CHARS) -> tuple[str, str]:
    """(training text, validation text). Validation is the head of the pydoc topics — the part that
    quant.eval's benchmarks evaluate on — and the training text the rest of it plus stdlib sources."""
    valid, rest = split_text(topics_text(), held_out_fraction=1.0 - VALID_FRACTION)
    return rest + "\n\n" + stdlib_text(stdlib_chars), valid


class Tokenizer:
    """The checkpoint's tokenizer.json through Hugging Face `tokenizers` (BOS added by hand)."""

    def __init__(self, tokenizer_json: dict):
        from tokenizers import Tokenizer as HFTokenizer

        self.tok = HFTokenizer.from_str(json.dumps(tokenizer_json))
        self.bos = tokenizer_json["model"]["vocab"][BOS]

    def encode(self, text: str) -> torch.Tensor:
        """[BOS, tokens...] int64, as llama.cpp tokenizes a perplexity text."""
        ids = self.tok.encode(text, add_special_tokens=False).ids
        return torch.tensor([self.bos] + ids, dtype=torch.int64)


# -- model -----------------------------------------------------------------------------------------------


def init_model(spec: TinySpec, seed: int) -> DeepSeekV3:
    """N(0, 0.02) weights (residual outputs scaled by 1/sqrt(2 n_layer)), norms 1, bias 0."""
    torch.manual_seed(seed)
    model = DeepSeekV3.from_config(config_dict(spec, tokenizer=_placeholder_tokenizer(spec)))
    residual_std = 0.02 / math.sqrt(2 * spec.num_hidden_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif name.endswith(("o_proj.weight", "down_proj.weight")):
                p.normal_(0.0, residual_std)
            else:
                p.normal_(0.0, 0.02)
    return model


def bigram_init(model: DeepSeekV3, tokens: torch.Tensor, smoothing: float = 0.1) -> None:
    """Start the embedding and the output head from a rank-`hidden` factorisation of the training
    text's bigram log-probabilities (row-centred L ≈ U S Vᵀ: embedding U√S, head V√S), so that the
    model predicts like a bigram model from step 0 and the short CPU budget is spent on what a
    transformer adds. Only training tokens are counted; RMSNorm keeps each row's direction, not
    its length, so every row's logits come out at one common temperature, which training corrects."""
    V, H = model.a.vocab_size, model.a.hidden_size
    counts = torch.zeros(V, V, dtype=torch.float64)
    counts.index_put_((tokens[:-1], tokens[1:]), torch.ones(len(tokens) - 1, dtype=torch.float64), accumulate=True)
    logp = ((counts + smoothing) / (counts + smoothing).sum(1, keepdim=True)).log()
    u, s, vh = torch.linalg.svd(logp - logp.mean(1, keepdim=True))
    emb, head = u[:, :H] * s[:H].sqrt(), vh[:H].t() * s[:H].sqrt()
    rms = emb.pow(2).mean(1).sqrt().mean()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_((emb / rms).float())
        model.lm_head.weight.copy_((head * rms).float())


def _placeholder_tokenizer(spec: TinySpec) -> dict:
    """Enough of tokenizer.json for config_dict's special-token ids without training a BPE."""
    n = 256 + spec.n_merges
    return {"added_tokens": [{"content": s, "id": n + i} for i, s in enumerate((BOS, EOS, PAD))]}


def hf_tensors(model: DeepSeekV3, spec: TinySpec):
    """(HF name, tensor) in quant.tiny.tensor_specs order; a missing or misshapen tensor is an error."""
    state = model.state_dict()
    names = set()
    for name, shape in tensor_specs(spec):
        t = state[name]
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name}: trained shape {tuple(t.shape)}, the architecture says {shape}")
        names.add(name)
        yield name, t.detach()
    if extra := set(state) - names:
        raise ValueError(f"tensors outside the architecture: {sorted(extra)}")


def round_to_bf16(model: DeepSeekV3) -> None:
    """What the checkpoint stores: every weight through bfloat16 (the selection bias stays float32)."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not name.endswith("e_score_correction_bias"):
                t.copy_(t.to(torch.bfloat16).float())


def update_bias(model: DeepSeekV3, rate: float) -> None:
    """Aux-loss-free balancing: raise the bias of experts below the mean load, lower those above."""
    with torch.no_grad():
        for moe in model.moe_layers():
            load = moe.last_load.float()
            moe.gate.e_score_correction_bias += rate * torch.sign(load.mean() - load)


# -- evaluation ------------------------------------------------------------------------------------------


def window_nll(model: DeepSeekV3, tokens: torch.Tensor, n_ctx: int, max_windows: Optional[int] = None,
               bos: Optional[int] = None) -> torch.Tensor:
    """Negative log-likelihoods of llama-perplexity's scored tokens (see quant.eval.model): windows of
    n_ctx tokens, the first replaced by BOS, the second half scored. float64 [n_windows * scored]."""
    n = len(tokens) // n_ctx
    if max_windows is not None:
        n = min(n, max_windows)
    first = n_ctx // 2
    out = []
    with torch.no_grad():
        for i in range(n):
            w = tokens[i * n_ctx:(i + 1) * n_ctx].clone()
            if bos is not None:
                w[0] = bos
            logp = torch.log_softmax(model(w[None])[0].double(), dim=-1)
            targets = tokens[i * n_ctx + first + 1:(i + 1) * n_ctx]
            out.append(-logp[first:n_ctx - 1].gather(1, targets[:, None]).squeeze(1))
    return torch.cat(out)


def unigram_nll(train_tokens: torch.Tensor, targets: torch.Tensor, vocab: int) -> torch.Tensor:
    """NLL of the targets under the training text's token frequencies (add-one smoothed)."""
    counts = torch.bincount(train_tokens, minlength=vocab).double() + 1.0
    return -(counts / counts.sum()).log()[targets]


def bigram_nll(train_tokens: torch.Tensor, tokens: torch.Tensor, n_ctx: int, n_windows: int, vocab: int,
               smoothing: float = 0.1) -> torch.Tensor:
    """NLL of the scored targets under the training text's bigram frequencies (add-`smoothing`)."""
    counts = torch.zeros(vocab, vocab, dtype=torch.float64)
    counts.index_put_((train_tokens[:-1], train_tokens[1:]), torch.ones(len(train_tokens) - 1, dtype=torch.float64),
                      accumulate=True)
    logp = ((counts + smoothing) / (counts + smoothing).sum(1, keepdim=True)).log()
    first = n_ctx // 2
    prev = torch.cat([tokens[i * n_ctx + first:(i + 1) * n_ctx - 1] for i in range(n_windows)])
    return -logp[prev, scored_targets(tokens, n_ctx, n_windows)]


def scored_targets(tokens: torch.Tensor, n_ctx: int, n_windows: int) -> torch.Tensor:
    first = n_ctx // 2
    return torch.cat([tokens[i * n_ctx + first + 1:(i + 1) * n_ctx] for i in range(n_windows)])


# -- training --------------------------------------------------------------------------------------------


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batches(tokens: torch.Tensor, s: TrainSettings, bos: int):
    """Fixed order: non-overlapping (seq_len + 1)-token chunks, shuffled per epoch by a seeded
    generator; each input starts with BOS like an evaluation window."""
    g = torch.Generator().manual_seed(s.seed)
    n = (len(tokens) - 1) // s.seq_len
    order = torch.randperm(n, generator=g)
    pos = 0
    while True:
        if pos + s.batch > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos:pos + s.batch]
        pos += s.batch
        chunk = torch.stack([tokens[i * s.seq_len:i * s.seq_len + s.seq_len + 1] for i in idx.tolist()])
        x, y = chunk[:, :-1].clone(), chunk[:, 1:]
        x[:, 0] = bos
        yield x, y


def set_deterministic(threads: int = 1) -> None:
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train(spec: TinySpec, settings: TrainSettings, train_tokens: torch.Tensor, valid_tokens: torch.Tensor,
          bos: int, log=print) -> tuple[DeepSeekV3, dict]:
    """Train from scratch; returns the model (float32) and the curve. Same inputs, same weights."""
    set_deterministic()
    model = init_model(spec, settings.seed)
    if settings.bigram_init:
        bigram_init(model, train_tokens)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=settings.lr, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    curve = {"step": [], "train_loss": [], "valid_step": [], "valid_loss": [], "seconds": []}
    data = batches(train_tokens, settings, bos)
    t0 = time.monotonic()
    for step in range(settings.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, settings)
        x, y = next(data)
        model.train()
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        opt.step()
        update_bias(model, BIAS_RATE)
        curve["step"].append(step + 1)
        curve["train_loss"].append(round(loss.item(), 5))
        curve["seconds"].append(round(time.monotonic() - t0, 2))
        last = step + 1 == settings.steps
        if settings.eval_every and ((step + 1) % settings.eval_every == 0 or last):
            model.eval()
            v = window_nll(model, valid_tokens, settings.seq_len, settings.eval_windows, bos).mean().item()
            curve["valid_step"].append(step + 1)
            curve["valid_loss"].append(round(v, 5))
            log(f"step {step + 1}/{settings.steps}: train loss {loss.item():.4f}, valid loss {v:.4f} "
                f"(PPL {math.exp(v):.2f}), {time.monotonic() - t0:.0f} s")
    model.eval()
    return model, curve


# -- the loss curve as SVG (no plotting library needed) ----------------------------------------------------


def loss_svg(curve: dict, unigram_loss: float, title: str, width: int = 720, height: int = 400) -> str:
    left, right, top, bottom = 60, 20, 40, 50
    steps, train_loss = curve["step"], curve["train_loss"]
    k = max(1, len(train_loss) // 100)  # a running mean over k steps smooths the batch noise
    smooth = [sum(train_loss[max(0, i - k + 1):i + 1]) / len(train_loss[max(0, i - k + 1):i + 1])
              for i in range(len(train_loss))]
    y_max = math.ceil(max(max(smooth), unigram_loss) + 0.25)
    y_min = math.floor(min(smooth + curve["valid_loss"]) - 0.25)
    x_max = max(steps)

    def px(step: float, loss: float) -> tuple[float, float]:
        return (left + (width - left - right) * step / x_max,
                top + (height - top - bottom) * (y_max - loss) / (y_max - y_min))

    def path(xs, ys) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for i, (x, y) in enumerate(zip(xs, ys)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    for y in range(y_min, y_max + 1):
        x0, yy = px(0, y)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end">{y}</text>')
    for i in range(6):
        s = round(x_max * i / 5)
        xx, _ = px(s, y_min)
        out.append(f'<text x="{xx:.1f}" y="{height - bottom + 18}" text-anchor="middle">{s}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2})">cross-entropy (nats/token)</text>')
    ux0, uy = px(0, unigram_loss)
    out.append(f'<line x1="{left}" y1="{uy:.1f}" x2="{width - right}" y2="{uy:.1f}" stroke="#999" stroke-dasharray="6 4"/>')
    out.append(f'<text x="{width - right - 4}" y="{uy - 6:.1f}" text-anchor="end" fill="#666">unigram (validation)</text>')
    out.append(f'<path d="{path(steps, smooth)}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    out.append(f'<path d="{path(curve["valid_step"], curve["valid_loss"])}" fill="none" stroke="#d62728" stroke-width="2"/>')
    for x, y in zip(curve["valid_step"], curve["valid_loss"]):
        cx, cy = px(x, y)
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="#d62728"/>')
    out.append(f'<text x="{width - right - 4}" y="{top + 16}" text-anchor="end" fill="#1f77b4">training (running mean of {k} steps)</text>')
    out.append(f'<text x="{width - right - 4}" y="{top + 32}" text-anchor="end" fill="#d62728">validation</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- the llama.cpp cross-check -----------------------------------------------------------------------------


def llama_cpp_check(checkpoint: Path, model: DeepSeekV3, valid_text: str, n_ctx: int, work: Path,
                    max_windows: Optional[int] = None) -> dict:
    """Convert the checkpoint to an F16 GGUF with dsq, tokenize the validation text with llama.cpp, and
    score the same windows with llama.cpp and with our forward: the two perplexities and the largest
    logit difference. llama.cpp multiplies F16 weights with F16-rounded activations, so they differ in
    the third or fourth digit, not more."""
    import numpy as np

    from quant.convert import convert
    from quant.eval.model import EvalSettings, load_model, log_softmax, make_windows, scored_logits

    work.mkdir(parents=True, exist_ok=True)
    result = convert(checkpoint, work, "F16", name="tiny-moe-F16", stats=False)
    gguf = Path(result.files[0].path)
    settings = EvalSettings(n_ctx=n_ctx, threads=1, max_windows=max_windows)
    llm = load_model(gguf, settings)
    try:
        windows = make_windows(llm, valid_text, n_ctx, max_windows)
        nll_llama, nll_torch, max_diff, over = [], [], 0.0, 0
        for i, logits, targets in scored_logits(llm, windows, "llama.cpp check"):
            lp = log_softmax(logits)
            nll_llama.append(-lp[np.arange(len(targets)), targets])
            with torch.no_grad():
                ours = model(torch.tensor(windows.window_input(i), dtype=torch.int64)[None])[0]
            ours = ours[windows.first:n_ctx - 1].double().numpy()
            diff = np.abs(ours - logits).max(-1)
            max_diff = max(max_diff, float(diff.max()))
            over += int((diff > 0.05).sum())
            lp_t = ours - ours.max(-1, keepdims=True)
            lp_t = lp_t - np.log(np.exp(lp_t).sum(-1, keepdims=True))
            nll_torch.append(-lp_t[np.arange(len(targets)), targets])
    finally:
        llm.close()
    a, b = np.concatenate(nll_llama), np.concatenate(nll_torch)
    return {"gguf": gguf.name, "n_ctx": n_ctx, "windows": windows.n_windows, "scored_tokens": int(len(a)),
            "ppl_llama_cpp_f16": float(np.exp(a.mean())), "ppl_torch_same_tokens": float(np.exp(b.mean())),
            "max_abs_logit_diff": max_diff, "positions_logit_diff_over_0.05": over,
            "llama_tokens": int(len(windows.tokens))}


# -- the command --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--out", type=Path, default=TRAINED_DIR)
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    parser.add_argument("--check", action="store_true", help="convert to F16 GGUF and compare with llama.cpp")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "var" / "train-tiny")
    args = parser.parse_args(argv)

    started = time.monotonic()
    set_deterministic()
    spec, settings = SPEC, TrainSettings(steps=args.steps)
    train_text, valid_text = corpus()
    tok_files = tokenizer_files(spec, train_text)
    tokenizer = Tokenizer(tok_files["tokenizer.json"])
    train_tokens, valid_tokens = tokenizer.encode(train_text), tokenizer.encode(valid_text)
    print(f"training text {len(train_text):,} chars → {len(train_tokens):,} tokens; validation "
          f"{len(valid_text):,} chars → {len(valid_tokens):,} tokens ({time.monotonic() - started:.0f} s)", flush=True)

    model, curve = train(spec, settings, train_tokens, valid_tokens, tokenizer.bos,
                         log=lambda m: print(m, flush=True))
    train_seconds = curve["seconds"][-1]
    round_to_bf16(model)
    n_ctx = settings.seq_len
    nll = window_nll(model, valid_tokens, n_ctx, None, tokenizer.bos)
    n_windows = len(valid_tokens) // n_ctx
    uni = unigram_nll(train_tokens, scored_targets(valid_tokens, n_ctx, n_windows), spec.vocab_size)
    bi = bigram_nll(train_tokens, valid_tokens, n_ctx, n_windows, spec.vocab_size)
    params = sum(t.numel() for _, t in hf_tensors(model, spec))
    numbers = {
        "spec": asdict(spec), "settings": asdict(settings), "bias_rate": BIAS_RATE,
        "data": {"train_chars": len(train_text), "train_tokens": len(train_tokens),
                 "valid_chars": len(valid_text), "valid_tokens": len(valid_tokens),
                 "valid": f"first {VALID_FRACTION:.0%} of pydoc_data.topics (quant.eval.text.topics_text)",
                 "train": f"the rest of the topics + {STDLIB_CHARS:,} chars of stdlib *.py in name order"},
        "parameters": params, "tokens_seen": settings.steps * settings.batch * settings.seq_len,
        "train_seconds": train_seconds,
        "valid": {"n_ctx": n_ctx, "windows": n_windows, "scored_tokens": len(nll),
                  "ppl_torch_bf16": math.exp(nll.mean().item()), "ppl_unigram": math.exp(uni.mean().item()),
                  "ppl_bigram": math.exp(bi.mean().item())},
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1,
                        "machine": platform.machine()},
        "curve": curve,
    }
    print(f"validation PPL {numbers['valid']['ppl_torch_bf16']:.2f} (unigram {numbers['valid']['ppl_unigram']:.2f}, "
          f"bigram {numbers['valid']['ppl_bigram']:.2f}) "
          f"over {len(nll):,} tokens", flush=True)
    out = write_checkpoint(args.out, spec, hf_tensors(model, spec), corpus=train_text,
                           extra={"trained_by": "python -m quant.train_tiny", "steps": settings.steps})
    if args.check:
        numbers["llama_cpp"] = llama_cpp_check(out, model, valid_text, n_ctx, args.work)
        print(f"llama.cpp check: {numbers['llama_cpp']}", flush=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "tiny-moe-training.json").write_text(json.dumps(numbers, indent=1) + "\n")
    title = (f"tiny DeepSeek-V3 MoE ({params / 1e6:.1f}M weights): {settings.steps} steps, "
             f"validation PPL {numbers['valid']['ppl_torch_bf16']:.1f} vs unigram {numbers['valid']['ppl_unigram']:.0f}")
    (args.docs / "tiny-moe-loss.svg").write_text(loss_svg(curve, math.log(numbers["valid"]["ppl_unigram"]), title))
    print(f"wrote {out} and {args.docs}/tiny-moe-*; {time.monotonic() - started:.0f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
