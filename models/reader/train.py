"""Recipe for the bundled reading model: train models/reader/model.py on generated pages,
then export GGUFs (F16 text + mmproj, Q8_0 and Q4_K_M text) with foveate's writer.

    python models/reader/train.py train --minutes 80 --out models/reader/work
    python models/reader/train.py export --ckpt models/reader/work/ckpt.pt --out models/reader

Seeded and deterministic given the thread count (torch CPU); see README.md here for the
command, time and curve of the committed model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "python"))

from model import Reader, ReaderShape  # noqa: E402
from foveate.instruments import pages as P  # noqa: E402
from foveate.instruments.shapes.tiny_model import char_vocab  # noqa: E402

PROMPT = "Read the text in the image."   # foveate's DEFAULT_PROMPT
COLS = 24
MEAN = STD = 0.5


class CharTokenizer:
    """Mirror of the GGUF vocab (llama.cpp SPM type, no space prefix): space -> U+2581."""

    def __init__(self):
        self.tokens, _ = char_vocab()
        self.id = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        return [self.id["\u2581" if c == " " else c] for c in text]

    def special(self, name: str) -> int:
        return self.id[name]

    def chat(self):
        """Token ids before and after the image for foveate's chat prompt."""
        sp = self.special
        prefix = [sp("<|im_start|>")] + self.encode("user\n") + [sp("<|vision_start|>")]
        suffix = ([sp("<|vision_end|>")] + self.encode("\n" + PROMPT) + [sp("<|im_end|>")]
                  + self.encode("\n") + [sp("<|im_start|>")] + self.encode("assistant\n"))
        return prefix, suffix


def pixels(img) -> torch.Tensor:
    a = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy((a - MEAN) / STD).permute(2, 0, 1)


def page_spec(layout, rows, margin=1):
    """`rows` lines per page in `layout` ("grid": the bundled reader's pages with `margin`
    blank rows below; "document": foveate.instruments.pages.LAYOUTS["document"], fixed page height)."""
    if layout == "grid":
        return P.PageSpec(cols=COLS, rows=rows, margin=margin)
    return replace(P.LAYOUTS[layout], rows=rows, min_rows=0)


def make_batch(tok, split, indices, rows, margin=1, layout="grid"):
    prefix, prompt = tok.chat()
    spec = page_spec(layout, rows, margin)
    imgs, answers = [], []
    for i in indices:
        page = P.make_page(split, int(i), spec)
        imgs.append(pixels(page.image))
        answers.append(tok.encode(page.text) + [tok.special("<|im_end|>")])
    L = max(map(len, answers))
    suffix = torch.full((len(indices), len(prompt) + L), tok.special("<unk>"), dtype=torch.long)
    target = torch.full_like(suffix, -100)
    for b, a in enumerate(answers):
        seq = prompt + a
        suffix[b, :len(seq)] = torch.tensor(seq)
        # logits at j predict token j+1; learn only the answer (and its end token)
        target[b, len(prompt) - 1:len(seq) - 1] = torch.tensor(a)
    return (torch.stack(imgs), torch.tensor([prefix] * len(indices)), suffix, target)


def shape_for(tok) -> ReaderShape:
    return ReaderShape(n_vocab=len(tok.tokens))


def curriculum_rows(progress, max_rows=16):
    """Short pages first (cheap steps, easy alignment), then up to full pages of `max_rows`
    lines (reached at 60% of the run)."""
    ramp = min(1.0, max(0.0, (progress - 0.05) / 0.55))
    return 1 + int(round(ramp * (max_rows - 1)))


def evaluate(model, tok, n=8, rows=16, margin=1, layout="grid"):
    """Held-out loss, token accuracy and end-of-answer accuracy (does it stop after the last line)."""
    model.eval()
    with torch.no_grad():
        x, pre, suf, tgt = make_batch(tok, "heldout", range(100000, 100000 + n), rows, margin,
                                      layout)
        logits = model(x, pre, suf)
        m = tgt != -100
        pred = logits.argmax(-1)
        acc = (pred[m] == tgt[m]).float().mean().item()
        loss = F.cross_entropy(logits.transpose(1, 2), tgt).item()
        end = tgt == tok.special("<|im_end|>")
        end_acc = (pred[end] == tgt[end]).float().mean().item()
    model.train()
    return loss, acc, end_acc


def loss_fn(logits, tgt, tok, eos_weight):
    """Cross-entropy on the answer; the end token can weigh more (one per page, and stopping
    after the last line is what whole-page CER punishes hardest)."""
    per = F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none")
    w = (tgt != -100).float()
    w = torch.where(tgt == tok.special("<|im_end|>"), w * eos_weight, w)
    return (per * w).sum() / w.sum()


def train(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    tok = CharTokenizer()
    shape = shape_for(tok)
    shape.rope_1d = args.rope_1d
    model = Reader(shape)
    nparam = sum(p.numel() for p in model.parameters())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.freeze_vision and not (args.init or args.resume):
        raise SystemExit("--freeze-vision keeps a trained projector: give --init or --resume")
    if args.freeze_vision:   # keep the initial projector: only the text model learns
        model.vision.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    log = open(out / "train-log.jsonl", "a")
    print(f"params {nparam/1e6:.2f}M, steps {args.steps}, batch {args.batch}", flush=True)
    t0 = time.time()
    seen = 0
    step = 0
    start = 0
    if args.init:
        model.load_state_dict(torch.load(args.init)["model"])   # fine-tune: weights only
    if args.resume and (out / "ckpt.pt").exists():
        ck = torch.load(out / "ckpt.pt")
        if ck["shape"].get("rope_1d", False) != args.rope_1d:
            raise SystemExit("--resume: the checkpoint's RoPE (--rope-1d or not) differs")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, seen = ck["step"], ck["seen"]
        start = step
    t_budget = args.minutes * 60 if args.minutes else float("inf")
    max_rows = P.LAYOUTS[args.layout].rows   # the curriculum's last pages: full ones
    elapsed0 = 0.0 if not start else ck.get("elapsed", 0.0)
    while step < args.steps:
        # progress drives LR decay and curriculum: steps or the time budget, whichever ends first
        progress = max(step / args.steps, (elapsed0 + time.time() - t0) / t_budget)
        if progress >= 1.0:
            print("budget reached", flush=True)
            break
        lr = args.lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([args.seed, step])
        if args.rows:
            lo, hi = map(int, args.rows.split(":"))
            rows = int(rng.integers(lo, hi + 1))
        else:
            rows = curriculum_rows(progress, max_rows)
            rows = int(rng.integers(max(1, rows - 4), rows + 1))
        x, pre, suf, tgt = make_batch(tok, "train", range(seen, seen + args.batch), rows, args.margin,
                                      args.layout)
        seen += args.batch
        logits = model(x, pre, suf)
        loss = loss_fn(logits, tgt, tok, args.eos_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == args.steps:
            m = tgt != -100
            acc = (logits.argmax(-1)[m] == tgt[m]).float().mean().item()
            rec = dict(step=step, rows=rows, progress=round(progress, 3), loss=round(loss.item(), 4), acc=round(acc, 4),
                       lr=lr, min=round((time.time() - t0) / 60, 2))
            if step % 250 == 0 or step == args.steps:
                rec["heldout_loss"], rec["heldout_acc"], rec["heldout_end_acc"] = evaluate(
                    model, tok, rows=max_rows, margin=args.margin, layout=args.layout)
                torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step,
                                seen=seen, shape=vars(model.s),
                                elapsed=elapsed0 + time.time() - t0), out / "ckpt.pt")
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
    torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step, seen=seen,
                    shape=vars(model.s), elapsed=elapsed0 + time.time() - t0), out / "ckpt.pt")


# PyTorch state key -> llama.cpp GGUF tensor name
TOP_NAMES = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
             "out.weight": "output.weight", "vision.patch.weight": "v.patch_embd.weight",
             "vision.post_ln.weight": "v.post_ln.weight",
             "vision.mm0.weight": "mm.0.weight", "vision.mm0.bias": "mm.0.bias",
             "vision.mm2.weight": "mm.2.weight", "vision.mm2.bias": "mm.2.bias"}
TEXT_BLOCK = {"ln1": "attn_norm", "q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
              "ln2": "ffn_norm", "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}
VISION_BLOCK = {"ln1": "ln1", "ln2": "ln2", "q": "attn_q", "k": "attn_k", "v": "attn_v",
                "o": "attn_out", "gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}


def gguf_name(key: str) -> str:
    """The GGUF name of a state key (`blocks.{i}.{a}.{kind}` -> `blk.{i}.{...}.{kind}`)."""
    if key in TOP_NAMES:
        return TOP_NAMES[key]
    p = key.split(".")
    if p[0] == "blocks":
        return f"blk.{p[1]}.{TEXT_BLOCK[p[2]]}.{p[3]}"
    if p[:2] == ["vision", "blocks"]:
        return f"v.blk.{p[2]}.{VISION_BLOCK[p[3]]}.{p[4]}"
    raise KeyError(f"no GGUF name for {key}")


def gguf_weights(model: Reader):
    """Map the PyTorch state to llama.cpp's GGUF tensors: (text, projector) name -> array.
    llama.cpp sums two temporal slices of one frame, so the patch conv is split in halves."""
    text, proj = {}, {}
    for key, v in model.state_dict().items():
        name, arr = gguf_name(key), v.detach().float().numpy()
        if name == "v.patch_embd.weight":
            proj[name] = proj[name + ".1"] = arr / 2
        else:
            (proj if name.startswith(("v.", "mm.")) else text)[name] = arr
    return text, proj


def tiny_shape(s: ReaderShape, name: str):
    from foveate.instruments.shapes.tiny_model import TinyShape
    return TinyShape(n_embd=s.n_embd, n_head=s.n_head, n_head_kv=s.n_head_kv, n_ff=s.n_ff,
                     n_layer=s.n_layer, n_ctx_train=4096, v_embd=s.v_embd, v_head=s.v_head,
                     v_ff=s.v_ff, v_layer=s.v_layer, v_wa_pattern=s.v_wa_pattern,
                     image_size=COLS * P.CELL, rope_base=s.rope_base,
                     image_mean=(MEAN,) * 3, image_std=(STD,) * 3, name=name,
                     rope_1d=s.rope_1d)


def export(model: Reader, out: Path, name="foveate-reader", quants=("Q8_0", "Q4_K_M")):
    from foveate.instruments.shapes.tiny_model import write_projector, write_text_model
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text, proj = gguf_weights(model)
    shape = tiny_shape(model.s, name)
    f16 = write_text_model(out / f"{name}-f16.gguf", shape, weights=text)
    mm = write_projector(out / f"{name}-mmproj-f16.gguf", shape, weights=proj)
    paths = [f16, mm]
    if quants:
        from foveate.instruments.shapes.tiny_model import quantize
        for q in quants:
            paths.append(quantize(f16, out / f"{name}-{q.lower()}.gguf", q))
    return paths


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default=str(HERE / "work"))
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--minutes", type=float, default=0)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1.5e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--init", help="start from this checkpoint's weights (fine-tune; fresh optimizer)")
    t.add_argument("--rows", help="lines per page drawn uniformly from LO:HI (no curriculum)")
    t.add_argument("--margin", type=int, default=1, help="blank cell rows below the text (grid)")
    t.add_argument("--layout", default="grid", choices=sorted(P.LAYOUTS),
                   help="page layout (foveate.instruments.pages.LAYOUTS); document pages have a fixed height")
    t.add_argument("--eos-weight", type=float, default=1.0, help="loss weight of the end token")
    t.add_argument("--rope-1d", action="store_true", help="1-D RoPE text model (arch qwen2)")
    t.add_argument("--freeze-vision", action="store_true", help="train the text model only")
    e = sub.add_parser("export")
    e.add_argument("--ckpt", default=str(HERE / "work" / "ckpt.pt"))
    e.add_argument("--out", default=str(HERE))
    e.add_argument("--name", default="foveate-reader")
    a = ap.parse_args()
    if a.cmd == "train":
        train(a)
    else:
        ck = torch.load(a.ckpt)
        model = Reader(ReaderShape(**ck["shape"]))
        model.load_state_dict(ck["model"])
        for p in export(model, Path(a.out), name=a.name):
            print(p)


if __name__ == "__main__":
    main()
