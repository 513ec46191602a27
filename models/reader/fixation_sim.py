"""Fixation on the reading model, simulated in its PyTorch twin: where does its attention go,
and how well can ANY top-k selection do? Loads the committed F16 GGUFs (no checkpoint needed).

    python models/reader/fixation_sim.py [--pages 12] [--ratio 0.05]
    python models/reader/fixation_sim.py --layout document --model work/layout-gguf/foveate-reader-layout-f16.gguf

Prints (1) per layer: share of attention on image tokens and effective number of image cells
attended (exp of the entropy), per head; (2) recall: share of layer l's image attention mass
inside the top-k of layer f's scores (same step / previous step); (3) greedy decoding CER on
held-out pages for dense, foveate's method (one focal layer, warm start below it: what
llama.cpp runs), an ORACLE (every layer attends to its own exact top-k: an upper bound for any
top-k selection), each also with "compensation" for the hidden image cells, in several forms:
one pseudo-cell per KV head holding the mean K/V of the hidden cells (logit + log(n_hidden)),
the same from all image cells, one per chunk / band of rows, and a fixed stratified sample of
image cells, each attended with logit + log(hidden cells / sample cells not selected): the
form the ggml ops run (`--fixation-sample`, default 64). Results: docs/benchmarks.md,
"Fixation: why the reading model misses" and "Compensation".
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import model as M  # noqa: E402
import train as T  # noqa: E402
from foveate.instruments import pages as P  # noqa: E402
from foveate.instruments.evaluate import cer  # noqa: E402


def load_committed(text=HERE / "foveate-reader-f16.gguf", proj=HERE / "foveate-reader-mmproj-f16.gguf"):
    """The PyTorch twin with the weights of the committed GGUFs (train.gguf_name per state key)."""
    import gguf

    tok = T.CharTokenizer()
    model = M.Reader(T.shape_for(tok))
    tensors = {}
    for path in (text, proj):
        for t in gguf.GGUFReader(str(path)).tensors:
            tensors[t.name] = torch.from_numpy(np.array(t.data, dtype=np.float32))
    new = {}
    for k, v in model.state_dict().items():
        g = T.gguf_name(k)
        w = tensors[g]
        if g == "v.patch_embd.weight":   # the export split the conv into two temporal halves
            w = w + tensors["v.patch_embd.weight.1"]
        new[k] = w.reshape(v.shape)
    model.load_state_dict(new)
    model.eval()
    return tok, model


class Sim:
    key_bias = None   # (n prefill keys,) logit bias per key, or None (merge_sim's proportional attention)
    bias_from = 0     # prefill queries before this row attend without key_bias (merge_sim "text")

    def __init__(self, tok, model):
        self.tok, self.m, self.s = tok, model, model.s
        self.end = tok.special("<|im_end|>")

    def _bias(self, n):
        """Per-head logit bias for n keys: the prefill keys' key_bias, 0 for generated ones."""
        b = torch.zeros(self.s.n_head, n)
        if self.key_bias is not None:
            b[:, :len(self.key_bias)] = self.key_bias
        return b

    def _prefill_bias(self, n):
        if self.key_bias is None or self.bias_from == 0:
            return self.key_bias
        b = self.key_bias[None, :].repeat(n, 1)
        b[:self.bias_from] = 0.0
        return b

    def _attend(self, q, K, V, bias):
        rep = self.s.n_head // self.s.n_head_kv
        K, V = K.repeat_interleave(rep, 0), V.repeat_interleave(rep, 0)
        p = ((K @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(q.shape[-1]) + bias).softmax(-1)
        return (p.unsqueeze(-1) * V).sum(1), p

    def inputs(self, img_t, suffix):
        """Embeddings and (t, y, x) positions of prefix + image + suffix, as llama.cpp lays them out."""
        m = self.m
        prefix, _ = self.tok.chat()
        img, ph, pw = m.vision(img_t[None])
        n_pre = len(prefix)
        self.grid = (ph, pw)
        pos = m.positions(n_pre, ph, pw, len(suffix))
        x = torch.cat([m.embed(torch.tensor([prefix])), img, m.embed(torch.tensor([suffix]))], 1)
        return x, pos, (n_pre, n_pre + ph * pw)

    def prefill(self, img_t):
        m, s = self.m, self.s
        x, pos, span = self.inputs(img_t, self.tok.chat()[1])
        cos, sin = m.mrope(pos)
        n = x.shape[1]
        Ks, Vs = [], []
        for blk in m.blocks:
            h = blk.ln1(x)
            Ks.append(M.rotate(blk.k(h).view(1, n, s.n_head_kv, -1).transpose(1, 2), cos, sin)[0])
            Vs.append(blk.v(h).view(1, n, s.n_head_kv, -1).transpose(1, 2)[0])
            x = blk(x, cos, sin, self._prefill_bias(n))
        return Ks, Vs, span, int(pos[-1, 0]), m.out(m.norm(x[:, -1]))[0]

    @torch.no_grad()
    def read(self, img_t, ratio=0.0, focal=(1,), oracle=False, comp=False, k_min=4, max_new=500):
        m, s = self.m, self.s
        Ks, Vs, (i0, i1), p, logits = self.prefill(img_t)
        n_img = i1 - i0
        k = min(n_img, max(k_min, math.ceil(ratio * n_img))) if ratio else n_img
        out, nxt, prev = [], int(logits.argmax()), None
        while nxt != self.end and len(out) < max_new:
            out.append(nxt)
            p += 1
            cs, sn = m.mrope(torch.tensor([[p, p, p]]))
            x = m.embed(torch.tensor([[nxt]]))
            cur = prev  # layers below the first focal layer: the previous step's selection
            for li, blk in enumerate(m.blocks):
                h = blk.ln1(x)
                q = M.rotate(blk.q(h).view(1, 1, s.n_head, -1).transpose(1, 2), cs, sn)[0, :, 0]
                Ks[li] = torch.cat([Ks[li], M.rotate(blk.k(h).view(1, 1, s.n_head_kv, -1).transpose(1, 2), cs, sn)[0]], 1)
                Vs[li] = torch.cat([Vs[li], blk.v(h).view(1, 1, s.n_head_kv, -1).transpose(1, 2)[0]], 1)
                K, V = Ks[li], Vs[li]
                sparse = k < n_img
                if sparse and oracle:
                    _, pr = self._attend(q, K, V, self._bias(K.shape[1]))
                    cur = pr[:, i0:i1].sum(0).topk(k).indices.sort().values
                if not sparse or cur is None or (li in focal and not oracle):
                    a, pr = self._attend(q, K, V, self._bias(K.shape[1]))
                    if sparse and li in focal:
                        cur = pr[:, i0:i1].sum(0).topk(k).indices.sort().values
                else:
                    vis = torch.ones(K.shape[1], dtype=torch.bool)
                    vis[i0:i1] = False
                    vis[i0 + cur] = True
                    Kv, Vv, bias = K[:, vis], V[:, vis], self._bias(K.shape[1])[:, vis]
                    if comp:
                        hid = torch.ones(n_img, dtype=torch.bool)
                        hid[cur] = False
                        extra = []   # (K rows, V rows, logit bias) per compensation cell group

                        def summary(cells, n_for):
                            """one pseudo-cell: the mean K/V of `cells`, standing for n_for cells"""
                            extra.append((K[:, i0:i1][:, cells].mean(1, keepdim=True),
                                          V[:, i0:i1][:, cells].mean(1, keepdim=True), math.log(n_for)))

                        if isinstance(comp, str) and comp.startswith("sample"):
                            # a stratified sample of the hidden image cells, each standing for
                            # n_hidden / n_sample cells (logit bias log of that): an estimate of
                            # the hidden cells' softmax sums, no per-image state
                            # ("all": selected cells stay in the sample, the weight is
                            # (image cells - k) / sample size, as an op can do without the selection)
                            n_s = int(comp[6:].replace("all", ""))
                            samp = torch.unique((torch.arange(n_s) * n_img) // n_s + n_img // (2 * n_s))
                            if not comp.endswith("all"):
                                samp = samp[hid[samp]]
                            if len(samp):
                                extra.append((K[:, i0 + samp], V[:, i0 + samp],
                                              math.log(int(hid.sum()) / len(samp))))
                        elif isinstance(comp, str) and comp.startswith(("chunks", "rows")):
                            # one summary cell per chunk of consecutive image cells (reading
                            # order; the ops' layout-free form of row bands) or per band of
                            # image rows: the mean K/V of all its cells, bias log(hidden cells
                            # in it) or, "chunks...full", log(cells in it)
                            if comp.startswith("chunks"):
                                n_c = int(comp[6:].replace("full", ""))
                                bounds = [(j * n_img // n_c, (j + 1) * n_img // n_c) for j in range(n_c)]
                            else:
                                ph, pw = self.grid
                                band = int(comp[4:] or 1)
                                bounds = [(r0 * pw, min(ph, r0 + band) * pw) for r0 in range(0, ph, band)]
                            for a0, a1 in bounds:
                                cells = torch.zeros(n_img, dtype=torch.bool)
                                cells[a0:a1] = True
                                nh = a1 - a0 if comp.endswith("full") else int((cells & hid).sum())
                                if nh > 0:
                                    summary(cells, nh)
                        else:
                            # comp="all": the mean over every image cell (computable once per image,
                            # e.g. as one summary cell per image), not over the hidden ones per step
                            summary(torch.ones(n_img, dtype=torch.bool) if comp == "all" else hid,
                                    int(hid.sum()))
                        for Ke, Ve, b in extra:
                            Kv, Vv = torch.cat([Kv, Ke], 1), torch.cat([Vv, Ve], 1)
                            bias = torch.cat([bias, torch.full((s.n_head, Ke.shape[1]), b)], 1)
                    a, _ = self._attend(q, Kv, Vv, bias)
                x = x + blk.o(a.reshape(1, 1, -1))
                h2 = blk.ln2(x)
                x = x + blk.down(F.silu(blk.gate(h2)) * blk.up(h2))
            prev = cur
            nxt = int(m.out(m.norm(x[:, -1]))[0].argmax())
        return "".join(" " if self.tok.tokens[i] == "\u2581" else self.tok.tokens[i] for i in out)


@torch.no_grad()
def attention_table(tok, model, pages, ratio):
    """Teacher-forced answer positions: image attention per layer/head and top-k recall."""
    s = model.s
    sim = Sim(tok, model)
    prompt = tok.chat()[1]
    stats = []
    for img_t, truth, _ in pages:
        ids = tok.encode(truth) + [sim.end]
        # teacher-forced pass, keeping each layer's probabilities of the answer rows
        x, pos, (i0, i1) = sim.inputs(img_t, prompt + ids[:-1])
        cos, sin = model.mrope(pos)
        n = x.shape[1]
        rows = slice(n - len(ids), n)
        per_layer = []
        for blk in model.blocks:
            h = blk.ln1(x)
            q = M.rotate(blk.q(h).view(1, n, s.n_head, -1).transpose(1, 2), cos, sin)
            kk = M.rotate(blk.k(h).view(1, n, s.n_head_kv, -1).transpose(1, 2), cos, sin)
            kk = kk.repeat_interleave(s.n_head // s.n_head_kv, 1)
            a = (q @ kk.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            a = a.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            per_layer.append(a[0, :, rows, i0:i1])
            x = blk(x, cos, sin)
        stats.append(per_layer)
    n_img = stats[0][0].shape[-1]
    k = max(4, math.ceil(ratio * n_img))
    L = s.n_layer
    print(f"image tokens {n_img}, k = {k} ({ratio:g})")
    print("| layer | image share of attention, per head | effective image cells attended, per head |")
    print("|---|---|---|")
    for li in range(L):
        pr = torch.cat([st[li] for st in stats], 1)             # H, rows, I
        mass = pr.sum(-1)
        pn = pr / mass.unsqueeze(-1)
        eff = (-(pn.clamp_min(1e-12).log() * pn).sum(-1)).exp()
        print(f"| {li} | {' / '.join(f'{v:.2f}' for v in mass.mean(1).tolist())} | "
              f"{' / '.join(f'{v:.0f}' for v in eff.mean(1).tolist())} |")
    print("\nrecall: share of layer l's image attention inside the top-k of layer f (same step / previous step)")
    print("| f \\ l | " + " | ".join(str(li) for li in range(L)) + " |")
    print("|---" * (L + 1) + "|")
    for f in range(L):
        cells = []
        for li in range(L):
            same, prev = [], []
            for st in stats:
                top = st[f].sum(0).topk(k, -1).indices           # rows, k
                pl = st[li].sum(0)
                tot = pl.sum(-1)
                same.append(pl.gather(-1, top).sum(-1) / tot)
                prev.append(pl[1:].gather(-1, top[:-1]).sum(-1) / tot[1:])
            cells.append(f"{torch.cat(same).mean():.2f} / {torch.cat(prev).mean():.2f}")
        print(f"| {f} | " + " | ".join(cells) + " |")


def held_out_pages(n, start=100, layout="grid"):
    """(pixels, ground truth, placement) of held-out pages `start`.. in a foveate.instruments.pages layout."""
    out = []
    for i in range(start, start + n):
        page = P.make_page("heldout", i, P.LAYOUTS[layout])
        out.append((T.pixels(page.image), page.text, page.at))
    return out


def whole_output_accuracy(pages, read) -> tuple[float, float]:
    """(CER, 1 - CER) of read(pixels) against the pages' ground truth, micro-averaged over
    characters (foveate eval's measure)."""
    err = tot = 0.0
    for img_t, truth, at in pages:
        err += cer(read(img_t, truth, at), truth) * len(truth)
        tot += len(truth)
    return err / tot, 1 - err / tot


def add_model_args(ap):
    """The options both simulators share: which reader, which pages."""
    ap.add_argument("--pages", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(HERE / "foveate-reader-f16.gguf"),
                    help="F16 text GGUF (the projector is foveate-reader-mmproj-f16.gguf)")
    ap.add_argument("--layout", default="grid", choices=sorted(P.LAYOUTS),
                    help="page layout of the held-out pages (the model's training layout)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap)
    ap.add_argument("--ratio", type=float, default=0.05)
    ap.add_argument("--only", help="run only the configs whose name matches this regular expression")
    ap.add_argument("--focal", type=int, default=2,
                    help="the model's calibrated focal layer (grid reader: 2, session 3; layout reader: 3)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok, model = load_committed(text=args.model)
    pages = held_out_pages(args.pages, layout=args.layout)
    attention_table(tok, model, pages[:4], args.ratio)
    sim = Sim(tok, model)
    last = model.s.n_layer - 1
    configs = [("dense", {})]
    # compensation forms (Sim.read's comp): "" = none, True = mean of the hidden cells
    comps = [("", None), (", compensation", True), (", compensation from all image cells", "all")]
    comps += [(f", compensation from a sample of {n} hidden cells", f"sample{n}") for n in (8, 16, 32)]
    comps += [(", compensation from a sample of 16 image cells", "sample16all")]
    comps += [(f", compensation from {n} chunks", f"chunks{n}") for n in (4, 8, 16)]
    comps += [(", compensation from 8 chunks, bias log(chunk size)", "chunks8full"),
              (", compensation from row bands of 4", "rows4"),
              (", compensation from each image row", "rows1")]
    for f, why in ((model.s.n_layer // 3, "default n_layer/3"), (args.focal, "calibrated"), (last, "last")):
        configs += [(f"method, focal {f} ({why}){label}",
                     dict(focal=(f,), **({"comp": comp} if comp is not None else {})))
                    for label, comp in comps]
    configs += [("oracle (each layer its own top-k)", dict(oracle=True)),
                ("oracle, compensation", dict(oracle=True, comp=True))]
    if args.only:
        configs = [c for c in configs if c[0] == "dense" or re.search(args.only, c[0])]
    print(f"\ngreedy decoding, {len(pages)} held-out pages (heldout 100.., {args.layout} layout), ratio {args.ratio:g}, k_min 4")
    print("| config | CER | accuracy |")
    print("|---|---|---|")
    for name, cfg in configs:
        c, acc = whole_output_accuracy(
            pages, lambda img_t, *_: sim.read(img_t, ratio=args.ratio if cfg else 0.0, **cfg))
        print(f"| {name} | {c:.4f} | {acc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
