"""PyTorch twin of the llama.cpp graphs for Qwen2.5-VL (projector `qwen2.5vl_merger`,
text arch `qwen2vl`), used only to train the bundled reading model.

Every op mirrors llama.cpp's graph (tools/mtmd/models/qwen2vl.cpp, src/models/qwen2vl.cpp):
- vision: conv patch embed (two temporal slices summed), RMSNorm blocks with 2-D RoPE
  (first quarter of each head rotated by the patch row, second by the column, pairs
  (i, i + d/2)), window attention in blocks where (i+1) % n_wa_pattern != 0 (windows of
  4x4 merged tokens), SwiGLU FFN with biases, post RMSNorm, 2x2 merge -> MLP(GELU).
- text: Qwen2 blocks (q/k/v biases, GQA), M-RoPE with sections (t, h, w) over pair
  index i of (i, i + d/2); image token (row y, col x) at position (P, P+y, P+x), text
  after the image starts at P + max(rows, cols) (mtmd_image_tokens_get_n_pos).
  With `rope_1d` (text arch `qwen2`, the 1-D twin used to measure merging's position
  choice for 1-D RoPE models): image token i at P + i, text after it from P + n_image.
`parity.py` checks this against llama.cpp on random weights before training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PATCH = 14
MERGE = 2
WINDOW = 4          # merged tokens per window side (112 px / 14 / 2)


@dataclass
class ReaderShape:
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 512
    n_layer: int = 4
    rope_base: float = 10000.0
    v_embd: int = 96
    v_head: int = 2
    v_ff: int = 192
    v_layer: int = 2
    v_wa_pattern: int = 2
    n_vocab: int = 0            # set from the tokenizer
    rope_1d: bool = False       # 1-D RoPE (llama.cpp arch qwen2) instead of M-RoPE

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def sections(self):
        q = self.head_dim // 2
        return [q // 4, (q - q // 4) // 2, q - q // 4 - (q - q // 4) // 2, 0]


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x, cos, sin):
    """NeoX-style rotation of pairs (i, i + d/2); cos/sin have d/2 entries per position."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class VisionBlock(nn.Module):
    def __init__(self, s: ReaderShape):
        super().__init__()
        d = s.v_embd
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.gate, self.up = nn.Linear(d, s.v_ff), nn.Linear(d, s.v_ff)
        self.down = nn.Linear(s.v_ff, d)
        self.n_head = s.v_head

    def forward(self, x, cos, sin, mask):
        B, N, D = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).view(B, N, self.n_head, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(a.transpose(1, 2).reshape(B, N, D))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Vision(nn.Module):
    def __init__(self, s: ReaderShape):
        super().__init__()
        self.s = s
        self.patch = nn.Conv2d(3, s.v_embd, PATCH, PATCH, bias=False)
        self.blocks = nn.ModuleList(VisionBlock(s) for _ in range(s.v_layer))
        self.post_ln = RMSNorm(s.v_embd)
        self.mm0 = nn.Linear(4 * s.v_embd, 4 * s.v_embd)
        self.mm2 = nn.Linear(4 * s.v_embd, s.n_embd)

    def forward(self, pixels):
        """pixels: (B, 3, H, W) normalised. Returns (B, rows*cols, n_embd) in row-major
        merged-token order, as mtmd hands them to the LLM."""
        s = self.s
        x = self.patch(pixels)                       # B, D, py, px
        B, D, py, px = x.shape
        ph, pw = py // MERGE, px // MERGE
        # patch order of llama.cpp: for each merged token (row-major), its 2x2 patches
        x = x.view(B, D, ph, MERGE, pw, MERGE).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, D)
        gy = torch.arange(ph).view(ph, 1, 1, 1) * MERGE + torch.arange(MERGE).view(1, 1, MERGE, 1)
        gx = torch.arange(pw).view(1, pw, 1, 1) * MERGE + torch.arange(MERGE).view(1, 1, 1, MERGE)
        ys = gy.expand(ph, pw, MERGE, MERGE).reshape(-1).float()
        xs = gx.expand(ph, pw, MERGE, MERGE).reshape(-1).float()
        hd = D // s.v_head
        q = hd // 4
        inv = 10000.0 ** (-4.0 * torch.arange(q).float() / hd)
        ang = torch.cat([ys[:, None] * inv, xs[:, None] * inv], dim=-1)   # N, hd/2
        cos, sin = ang.cos(), ang.sin()
        win = ((ys // MERGE) // WINDOW) * 10000 + (xs // MERGE) // WINDOW
        wmask = (win[:, None] == win[None, :])
        for i, blk in enumerate(self.blocks):
            full = s.v_wa_pattern <= 0 or (i + 1) % s.v_wa_pattern == 0
            x = blk(x, cos, sin, None if full else wmask)
        x = self.post_ln(x).reshape(B, ph * pw, 4 * D)
        return self.mm2(F.gelu(self.mm0(x), approximate="tanh")), ph, pw


class TextBlock(nn.Module):
    def __init__(self, s: ReaderShape):
        super().__init__()
        d, hd = s.n_embd, s.head_dim
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, hd * s.n_head_kv)
        self.v = nn.Linear(d, hd * s.n_head_kv)
        self.o = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, s.n_ff, bias=False)
        self.up = nn.Linear(d, s.n_ff, bias=False)
        self.down = nn.Linear(s.n_ff, d, bias=False)
        self.s = s

    def forward(self, x, cos, sin, key_bias=None):
        """key_bias: optional (N,) logit added for every query to each key, or (N, N) per query
        and key (experiments: proportional attention for merged tokens in merge_sim.py);
        None = plain causal."""
        B, N, D = x.shape
        s = self.s
        h = self.ln1(x)
        q = self.q(h).view(B, N, s.n_head, -1).transpose(1, 2)
        k = self.k(h).view(B, N, s.n_head_kv, -1).transpose(1, 2)
        v = self.v(h).view(B, N, s.n_head_kv, -1).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if key_bias is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            mask = (torch.full((N, N), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
                    + (key_bias if key_bias.dim() == 2 else key_bias[None, :]).to(q.dtype))
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, N, D))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Reader(nn.Module):
    def __init__(self, s: ReaderShape):
        super().__init__()
        self.s = s
        self.vision = Vision(s)
        self.embed = nn.Embedding(s.n_vocab, s.n_embd)
        self.blocks = nn.ModuleList(TextBlock(s) for _ in range(s.n_layer))
        self.norm = RMSNorm(s.n_embd)
        self.out = nn.Linear(s.n_embd, s.n_vocab, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def mrope(self, pos3):
        """pos3: (N, 3) positions (t, h, w) -> cos, sin of shape (N, head_dim/2)."""
        s = self.s
        hd = s.head_dim
        inv = s.rope_base ** (-2.0 * torch.arange(hd // 2).float() / hd)
        s0, s1, s2, _ = s.sections
        sel = torch.zeros(hd // 2, dtype=torch.long)
        sel[s0:s0 + s1] = 1
        sel[s0 + s1:] = 2
        ang = pos3[:, sel].float() * inv
        return ang.cos(), ang.sin()

    def positions(self, n_pre, ph, pw, n_suf):
        """(t, h, w) positions of n_pre prefix tokens, a ph x pw image and n_suf suffix tokens,
        as llama.cpp lays them out; (N, 3)."""
        P = n_pre
        t = torch.arange(n_pre)
        pre = torch.stack([t, t, t], 1)
        if self.s.rope_1d:   # one position per token; M-RoPE with t = h = w is 1-D NeoX RoPE
            i = P + torch.arange(ph * pw)
            im = torch.stack([i, i, i], 1)
            t2 = P + ph * pw + torch.arange(n_suf)
        else:
            yy, xx = torch.meshgrid(torch.arange(ph), torch.arange(pw), indexing="ij")
            im = torch.stack([torch.full((ph * pw,), P), P + yy.reshape(-1), P + xx.reshape(-1)], 1)
            t2 = P + max(ph, pw) + torch.arange(n_suf)
        return torch.cat([pre, im, torch.stack([t2, t2, t2], 1)], 0)

    def forward(self, pixels, prefix, suffix):
        """prefix: (B, Np) tokens up to <|vision_start|>; suffix: (B, Ns) tokens from
        <|vision_end|> on. Returns logits over suffix positions (B, Ns, vocab)."""
        img, ph, pw = self.vision(pixels)
        Np = prefix.shape[1]
        cos, sin = self.mrope(self.positions(Np, ph, pw, suffix.shape[1]))
        x = torch.cat([self.embed(prefix), img, self.embed(suffix)], 1)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        x = self.norm(x[:, Np + ph * pw:])
        return self.out(x)
