"""Merging on the reading model, simulated in its PyTorch twin: which rows should a keep ratio
drop? RTPrune ranks by L2 norm; this compares that with other scores on the same pages, the
same Sinkhorn merge (tests/rtprune_reference.merge, given each score as its row keys) and the
same positions (kept rows keep their M-RoPE positions), greedy decoding, whole-output CER.

    python models/reader/merge_sim.py [--pages 12] [--ratios 0.84,0.7] [--scores norm,distinct]
    python models/reader/merge_sim.py --dropped --pages 6 --ratios 0.84 --scores norm,duplicates,random
    python models/reader/merge_sim.py --layout document --model work/layout-gguf/foveate-reader-layout-f16.gguf

--dropped prints, instead of decoding, what each score's dropped rows are: the share that is
layout-redundant (the `layout` oracle's cells) and the share that is characters.

Scores (higher = kept):
  norm        ||x_i||, RTPrune's criterion
  duplicates  -sum_j!=i exp((cos_ij - 1) / 0.05): the fewest near-duplicates kept, so blank
              paper (rows all alike) goes first (foveate's --merge-score duplicates)
  distinct    1 - mean_j cos^2(x_i, x_j) (the r_sim matrix's row means; too blunt, kept as a
              measured negative)
  blank       ORACLE: blank cells (pixel variance 0) first, in random order
  layout      ORACLE: from the ground truth, every cell that is not a character or a line's
              first trailing blank (margins, spacing rows, the rest of each line, the blank
              lower page) first (the cells a reader needs least), in random order
  random      a seeded random order (floor)
  windowR     near-duplicates counted over the cell's page neighbours only ((2R+1)^2 window):
              the big empty areas go first, the cells around text stay (a measured negative)
  S+prop      score S with proportional attention: each kept row's key carries log(size) in
              every layer (size = 1 + the dropped rows nearest to it)
  S+softprop  the same with sizes from the Sinkhorn plan's shares (merged_sizes(hard=False))
  S+spaceprop the same with each dropped cell counted for the kept cell nearest on the page
  S+proptext, S+spaceproptext: the sizes seen only by the text after the image (not by the
              image rows' own prefill attention)
Results: docs/benchmarks.md, "Merging: which rows to drop".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))
import fixation_sim as FS  # noqa: E402
import rtprune_reference as R  # noqa: E402
from foveate.instruments import pages as P  # noqa: E402


def line_cells(truth, at, n, cols):
    """For each of the n cells (row-major, `cols` per row): its line index under placement
    `at` (-1 off the lines) and its column within that line."""
    r, c = np.divmod(np.arange(n), cols)
    i, off = np.divmod(r - at.top, 1 + at.spacing)
    on = (r >= at.top) & (off == 0) & (i < len(truth.split("\n")))
    return np.where(on, i, -1), c - at.left


def cell_kinds(truth, at, n, cols):
    """(needed, char): cells holding a character or a line's first trailing blank (what the
    layout oracle keeps), and cells holding a character."""
    lines = truth.split("\n")
    li, j = line_cells(truth, at, n, cols)
    length = np.array([len(lines[i]) if i >= 0 else -1 for i in li])
    needed = (li >= 0) & (j >= 0) & (j <= length)
    char = np.array([bool(nd and jj < ln and lines[i][jj] != " ")
                     for nd, i, jj, ln in zip(needed, li, j, length)])
    return needed, char


def scores(name, x, img_t, truth, at=P.Placement()):
    """x: n x d float64 projector rows; img_t: 3 x H x W pixels; truth: the page's text, its
    lines placed at `at`. Higher = kept."""
    tie = 1e-9 * np.random.default_rng(1).random(len(x))   # oracles: random order among equals
    if name == "norm":
        return np.linalg.norm(x, axis=1)
    if name == "duplicates":
        return -R.near_duplicates(x)
    if name.startswith("window"):
        return -window_duplicates(x, img_t.shape[2] // P.CELL, int(name[6:]))
    if name == "layout":
        return cell_kinds(truth, at, len(x), img_t.shape[2] // P.CELL)[0].astype(float) + tie
    if name == "distinct":
        return 1.0 - R.row_overlap(x)
    if name == "blank":
        px = img_t.numpy().mean(0)
        c = P.CELL
        h, w = px.shape[0] // c, px.shape[1] // c
        return px[:h * c, :w * c].reshape(h, c, w, c).var(axis=(1, 3)).reshape(-1) + tie
    if name == "random":
        return np.random.default_rng(0).random(len(x))
    raise ValueError(name)


def window_duplicates(x, cols, r, temperature=0.05):
    """The near-duplicate count over the cell's page neighbours only ((2r+1)^2 window): a
    blank cell inside a blank area counts every neighbour, one next to a line's end or a glyph
    counts fewer, so the big empty areas go first and the text's surroundings stay; ties
    broken by the whole page's count."""
    u = R.unit(x)
    n = len(x)
    yy, xx = np.divmod(np.arange(n), cols)
    near = (np.abs(yy[:, None] - yy[None]) <= r) & (np.abs(xx[:, None] - xx[None]) <= r)
    np.fill_diagonal(near, False)
    w = np.exp((u @ u.T - 1.0) / temperature)
    return (w * near).sum(1) + 1e-3 * R.near_duplicates(x) / n


def merged_sizes(x, kept, hard=True):
    """How many original rows each kept row stands for, summing to len(x): 1 + the dropped
    rows whose most similar kept row it is (hard, ToMe's matching), or + its share of every
    dropped row in the proportions of the Sinkhorn plan (soft; the plan's cosine costs at
    temperature 1 spread each row over nearly all kept rows)."""
    dropped = np.setdiff1d(np.arange(len(x)), kept)
    if not len(dropped):
        return np.ones(len(kept))
    cos = R.unit(x[kept]) @ R.unit(x[dropped]).T
    if hard:
        return 1.0 + np.bincount(cos.argmax(0), minlength=len(kept))
    plan = R.sinkhorn_plan(cos)
    return 1.0 + (plan / plan.sum(0, keepdims=True)).sum(1)


def spatial_sizes(kept, ph, pw):
    """Like merged_sizes(hard=True), but each dropped cell goes to the kept cell nearest to it
    on the page grid (row, column), not in embedding space: its attention mass stays where it was."""
    n = ph * pw
    dropped = np.setdiff1d(np.arange(n), kept)
    if not len(dropped):
        return np.ones(len(kept))
    ky, kx = np.divmod(np.asarray(kept), pw)
    dy, dx = np.divmod(dropped, pw)
    d2 = (dy[:, None] - ky[None]) ** 2 + (dx[:, None] - kx[None]) ** 2
    return 1.0 + np.bincount(d2.argmin(1), minlength=len(kept))


class MergeSim(FS.Sim):
    """Sim whose image rows go through a merge before the text model sees them. With
    `proportional` ("hard" / "soft" sizes, see merged_sizes), each kept row's key gets the
    logit bias log(size) in every layer (ToMe's proportional attention: a row standing for s
    rows draws s rows' attention)."""
    score, ratio, truth, at, proportional, alpha, text_only = "norm", 1.0, "", P.Placement(), False, 0.1, False

    def inputs(self, img_t, suffix):
        m = self.m
        prefix, _ = self.tok.chat()
        img, ph, pw = m.vision(img_t[None])
        x = img[0].double().numpy()
        rows, kept, _ = R.merge(x, ratio=self.ratio, alpha=self.alpha,
                                score=scores(self.score, x, img_t, self.truth, self.at))
        n_pre = len(prefix)
        pos = m.positions(n_pre, ph, pw, len(suffix))
        keep = np.concatenate([np.arange(n_pre), n_pre + kept, n_pre + ph * pw + np.arange(len(suffix))])
        self.key_bias = None
        if self.proportional:
            kb = np.zeros(len(keep))
            sizes = (spatial_sizes(kept, ph, pw) if self.proportional == "space"
                     else merged_sizes(x, kept, hard=self.proportional == "hard"))
            kb[n_pre:n_pre + len(kept)] = np.log(sizes)
            self.key_bias = torch.from_numpy(kb).float()
            # "...text": only the text after the image (prompt suffix, generated tokens) sees
            # the sizes; the image rows' own prefill attention stays plain
            self.bias_from = n_pre + len(kept) if self.text_only else 0
        img = torch.from_numpy(rows).float()[None]
        x = torch.cat([m.embed(torch.tensor([prefix])), img, m.embed(torch.tensor([suffix]))], 1)
        return x, pos[torch.from_numpy(keep)], (n_pre, n_pre + len(kept))


@torch.no_grad()
def dropped_table(model, pages, ratios, names):
    print(f"{len(pages)} held-out pages (heldout 100..): what the dropped rows are")
    print("| score | keep ratio | dropped: layout-redundant | dropped: characters | page: layout-redundant | page: characters |")
    print("|---|---|---|---|---|---|")
    per_page = []   # the projector rows and cell kinds of each page, computed once
    for img_t, truth, at in pages:
        x = model.vision(img_t[None])[0][0].double().numpy()
        per_page.append((x, img_t, truth, at, *cell_kinds(truth, at, len(x), img_t.shape[2] // P.CELL)))
    for ratio in ratios:
        for name in names:
            shares = []
            for x, img_t, truth, at, needed, char in per_page:
                _, kept, _ = R.merge(x, ratio=ratio, score=scores(name, x, img_t, truth, at))
                gone = np.setdiff1d(np.arange(len(x)), kept)
                spare = ~needed
                shares.append((spare[gone].mean(), char[gone].mean(), spare.mean(), char.mean()))
            cells = " | ".join(f"{v:.2f}" for v in np.mean(shares, 0))
            print(f"| {name} | {ratio:g} | {cells} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    FS.add_model_args(ap)
    ap.add_argument("--ratios", default="0.84,0.7")
    ap.add_argument("--scores", default="norm,duplicates,distinct,blank,layout,random")
    ap.add_argument("--alpha", type=float, default=0.1, help="residual weight (RTPrune: 0.1; 0 = drop only)")
    ap.add_argument("--dropped", action="store_true", help="classify the dropped rows, no decoding")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok, model = FS.load_committed(text=args.model)
    pages = FS.held_out_pages(args.pages, layout=args.layout)
    if args.dropped:
        dropped_table(model, pages, [float(r) for r in args.ratios.split(",")], args.scores.split(","))
        return
    sim = MergeSim(tok, model)
    sim.alpha = args.alpha
    print(f"greedy decoding, {len(pages)} held-out pages (heldout 100..), whole-output CER")
    print("| score | keep ratio | CER | accuracy |")
    print("|---|---|---|---|")
    runs = [("dense", 1.0)] + [(s, float(r)) for r in args.ratios.split(",") for s in args.scores.split(",")]
    for name, ratio in runs:
        base, _, prop = name.partition("+")
        sim.text_only = prop.endswith("text")
        prop = prop.removesuffix("text")
        sim.proportional = {"": False, "prop": "hard", "softprop": "soft", "spaceprop": "space"}[prop]
        sim.score, sim.ratio = ("norm" if name == "dense" else base), ratio

        def read(img_t, truth, at):
            sim.truth, sim.at = truth, at   # the layout oracle reads the ground truth
            return sim.read(img_t)

        c, acc = FS.whole_output_accuracy(pages, read)
        print(f"| {name} | {ratio:g} | {c:.4f} | {acc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
