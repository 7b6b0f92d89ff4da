#!/usr/bin/python3
"""PyTorch reference for bench/train: the same model, data, batching and optimiser as
Strata's trainer (trainer/model.c), so that samples/s compare like with like.

Model: item + position embeddings (item table tied with the output), pre-norm causal
single-head self-attention blocks with ReLU feed-forward (d -> 2d -> d), dropout, final
layer norm, softmax cross-entropy over the whole catalogue on every position that has a
next item. Ranking head, trained jointly: at every such position the true next item
and --rank-negatives items drawn from (count + 1)^0.75 are scored by an MLP (ReLU
layers 128-64-32, one logit) over [user state, item vector, their product, the
history pooled by attention to the item, context (last event type one-hot, history
length / max_len)], with binary cross-entropy; besides the sampled negatives each
position gets --rank-hard hard ones spread over the 100 items the retrieval scores
highest there (Strata also skips items of the user's own sequence; the cost is the
same); the loss is cross-entropy + weight x BCE, both per predicted position. Batches: users shuffled, sorted by length within
windows of 32 batches, padded to the batch's longest history (at most max_len),
visited in random order. Adam(lr, betas=(0.9, 0.98), eps=1e-9).

Input: a file with one user per line, item indices (0-based) in time order.
Prints one line: samples_per_second=<float> epochs=<n> seconds=<float> loss=<float>
"""
import argparse
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, ffn, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.w1 = nn.Linear(d, ffn)
        self.w2 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        h = self.ln1(x)
        q, k, v = self.wq(h), self.wk(h), self.wv(h)
        s = q @ k.transpose(1, 2) / math.sqrt(x.shape[-1])
        s = s.masked_fill(~mask, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        x = x + self.drop(self.wo(p @ v))
        x = x + self.drop(self.w2(F.relu(self.w1(self.ln2(x)))))
        return x


class Model(nn.Module):
    def __init__(self, n_items, d, max_len, blocks, dropout):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(n_items, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(max_len, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, 2 * d, dropout) for _ in range(blocks)])
        self.lnf = nn.LayerNorm(d, eps=1e-5)
        self.drop = nn.Dropout(dropout)
        self.d, self.max_len = d, max_len

    def forward(self, items, valid):
        B, L = items.shape
        x = self.emb[items.clamp(min=0)] * math.sqrt(self.d) + self.pos[self.max_len - L:]
        x = self.drop(x * valid.unsqueeze(-1))
        causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
        mask = causal.unsqueeze(0) & valid.unsqueeze(1)
        for b in self.blocks:
            x = b(x, mask) * valid.unsqueeze(-1)
        return self.lnf(x)


class Ranker(nn.Module):
    TYPES = 8

    def __init__(self, d, widths):
        super().__init__()
        layers, w = [], 4 * d + self.TYPES + 1
        for o in widths:
            layers += [nn.Linear(w, o), nn.ReLU()]
            w = o
        layers.append(nn.Linear(w, 1))
        self.mlp = nn.Sequential(*layers)

    def loss(self, emb, h, items, valid, targets, keep, negatives, max_len):
        B, L = items.shape
        b_idx, t_idx = keep.nonzero(as_tuple=True)
        P = b_idx.shape[0]
        cands = torch.cat([targets[keep].unsqueeze(1), negatives], 1)        # P x C
        v = emb[cands]                                                        # P x C x d
        u = h[keep].unsqueeze(1).expand_as(v)
        X = emb[items.clamp(min=0)][b_idx]                                    # P x L x d
        s = torch.einsum("pcd,pld->pcl", v, X) / math.sqrt(v.shape[-1])
        j = torch.arange(L)
        seen = (j.unsqueeze(0) <= t_idx.unsqueeze(1)) & valid[b_idx]         # P x L
        a = torch.softmax(s.masked_fill(~seen.unsqueeze(1), float("-inf")), dim=-1)
        pooled = a @ X
        first = L - valid.sum(1)
        ctx = torch.zeros(P, cands.shape[1], self.TYPES + 1)
        ctx[..., 0] = 1
        ctx[..., self.TYPES] = ((t_idx - first[b_idx] + 1).float() / max_len).unsqueeze(1)
        z = self.mlp(torch.cat([u, v, u * v, pooled, ctx], -1)).squeeze(-1)
        y = torch.zeros_like(z)
        y[:, 0] = 1
        return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / P


def batches(seqs, batch, max_len, rng):
    order = [u for u in range(len(seqs)) if len(seqs[u]) >= 2]
    rng.shuffle(order)
    window = batch * 32
    for w in range(0, len(order), window):
        order[w:w + window] = sorted(order[w:w + window], key=lambda u: len(seqs[u]))
    starts = list(range(0, len(order), batch))
    rng.shuffle(starts)
    for s in starts:
        users = order[s:s + batch]
        L = min(max_len, max(len(seqs[u]) - 1 for u in users))
        items = torch.full((len(users), L), -1, dtype=torch.long)
        targets = torch.full((len(users), L), -1, dtype=torch.long)
        for r, u in enumerate(users):
            q = seqs[u]
            n = min(L, len(q) - 1)
            items[r, L - n:] = torch.tensor(q[len(q) - 1 - n:len(q) - 1])
            targets[r, L - n:] = torch.tensor(q[len(q) - n:])
        yield items, targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rank-negatives", type=int, default=4)
    ap.add_argument("--rank-weight", type=float, default=1.0)
    ap.add_argument("--rank-hard", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    seqs = [[int(x) for x in line.split()] for line in open(a.data)]
    model = Model(a.items, a.dim, a.max_len, a.blocks, a.dropout)
    ranker = Ranker(a.dim, [128, 64, 32]) if a.rank_negatives > 0 else None
    counts = torch.ones(a.items)
    for q in seqs:
        for i in q:
            counts[i] += 1
    q_pop = counts ** 0.75
    params = list(model.parameters()) + (list(ranker.parameters()) if ranker else [])
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.9, 0.98), eps=1e-9)
    rng = random.Random(a.seed)
    samples, loss_sum, t0 = 0, 0.0, time.perf_counter()
    for _ in range(a.epochs):
        for items, targets in batches(seqs, a.batch, a.max_len, rng):
            valid = items >= 0
            h = model(items, valid)
            keep = targets >= 0
            logits = h[keep] @ model.emb.t()
            loss = F.cross_entropy(logits, targets[keep])
            if ranker:
                P = int(keep.sum())
                negs = torch.multinomial(q_pop, P * a.rank_negatives, replacement=True).view(P, -1)
                if a.rank_hard > 0:
                    pool = torch.topk(logits.detach(), min(100, a.items), dim=1).indices
                    strata = torch.arange(a.rank_hard) * pool.shape[1] // a.rank_hard
                    negs = torch.cat([negs, pool[:, strata]], 1)
                loss = loss + a.rank_weight * ranker.loss(model.emb, h, items, valid, targets, keep, negs, a.max_len)
            opt.zero_grad()
            loss.backward()
            opt.step()
            samples += int(keep.sum())
            loss_sum += float(loss) * int(keep.sum())
    secs = time.perf_counter() - t0
    print(f"samples_per_second={samples / secs:.1f} epochs={a.epochs} seconds={secs:.2f} loss={loss_sum / samples:.4f}")


if __name__ == "__main__":
    main()
