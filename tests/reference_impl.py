"""A slow, loop-based, numpy re-implementation of the published formulas.

Written straight from the method description (docs: stitch, cutoff, step, smooth max,
adaptive inner cutoff, frames, weights, pruning), independently of the vectorised
library code, so tests can compare the two.  Open clouds only, one graph.
"""
import itertools
import math

import numpy as np

W0_INV_E = 0.2784645427610738  # Lambert W0(1/e), from its definition w e^w = 1/e
assert abs(W0_INV_E * math.exp(W0_INV_E) - 1 / math.e) < 1e-15


def stitch(x):
    if x <= -1:
        return 1.0
    if x >= 1:
        return -1.0
    return math.tanh(1 / (x + 1) + 1 / (x - 1))


def fc(r, rc, d):
    if r <= rc - d:
        return 1.0
    if r >= rc:
        return 0.0
    return 0.5 + 0.5 * stitch(2 * (r - rc + d / 2) / d)


def q(s, w, d):
    if s <= w:
        return 0.0
    if s >= w + d:
        return 1.0
    return 0.5 + 0.5 * stitch(-2 * (s - w - d / 2) / d)


def q_lin(s, w, d):
    return q(s, w, d) * (s - w) / d if s >= w else 0.0


def smooth_max(values, weights, beta):
    num = sum(u * v * math.exp(beta * v) for v, u in zip(values, weights))
    den = sum(u * math.exp(beta * v) for v, u in zip(values, weights))
    return num / den if den > 0 else 0.0


def neighbours(pos, i, cutoff):
    out = []
    for j in range(len(pos)):
        if j != i:
            v = pos[j] - pos[i]
            r = float(np.linalg.norm(v))
            if 0 < r < cutoff:
                out.append((j, v, r))
    return out


def sin2(a, b):
    c = np.cross(a / np.linalg.norm(a), b / np.linalg.norm(b))
    return float(c @ c)


def inner_cutoff(pos, i, r_out, beta=5.0, W=0.2, dW=0.15, drc=0.15):
    nb = neighbours(pos, i, r_out)
    values, weights = [r_out], [1.0]
    for (_, va, ra), (_, vb, rb) in itertools.combinations(nb, 2):
        values.append(smooth_max([ra, rb], [1.0, 1.0], beta) + W0_INV_E / beta)
        weights.append(fc(ra, r_out, drc) * fc(rb, r_out, drc) * q(sin2(va, vb), W, dW))
    return smooth_max(values, weights, -beta) + drc


def frames(pos, r_out, W=0.2, dW=0.15, drc=0.15, beta=5.0):
    """All frames with non-zero weight: list of (centre, F (columns e1 e2 e3), weight)."""
    out = []
    for i in range(len(pos)):
        r_in = inner_cutoff(pos, i, r_out, beta, W, dW, drc)
        nb = [n for n in neighbours(pos, i, r_out) if n[2] < r_in]
        for (_, va, ra), (_, vb, rb) in itertools.permutations(nb, 2):
            w = fc(ra, r_in, drc) * fc(rb, r_in, drc) * q_lin(sin2(va, vb), W - dW, dW)
            w *= fc(ra, r_out, drc) * fc(rb, r_out, drc)  # ecse's continuity fix at r_out
            if w > 0:
                e1 = va / ra
                e2 = np.cross(va, vb)
                e2 = e2 / np.linalg.norm(e2)
                out.append((i, np.stack([e1, e2, np.cross(e1, e2)], axis=1), w))
    return out


def prune(weights, threshold=0.9, rounds=4, aux=0.5):
    w = list(weights)
    for _ in range(rounds):
        w_max = smooth_max(w, w, 1.0)
        turn_on = fc(w_max, aux, aux / 2)
        w = [wk * (q(wk, threshold * w_max, (1 - threshold) * w_max) * (1 - turn_on) + turn_on)
             if w_max > 0 else wk for wk in w]
    return w


def aux_weight(weights, aux=0.5):
    return fc(smooth_max(weights, weights, 1.0), aux, aux)
