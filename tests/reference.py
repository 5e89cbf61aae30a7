"""Slow, obvious NumPy restatement of ../shared/design/seed-equations.md: the oracle for the kernels.

Notation as in the equations: V (M x N) input->hidden, U (M x M) recurrent, W (O x M) hidden->output,
theta_j / theta_k biases; Wc (C x M), theta_c for the class layer of the class-factored softmax.
Deltas are delta = -dC/dnet (d - y for softmax + cross-entropy), and the weight changes are
Delta w = eta * sum(delta * input), as in the equations. Nothing here is used by the package.
"""
from __future__ import annotations

import numpy as np


def f(net, act):
    if act == "sigmoid":
        return 1.0 / (1.0 + np.exp(-net))
    if act == "tanh":
        return np.tanh(net)
    return np.maximum(net, 0.0)


def fprime(net, act):
    if act == "sigmoid":
        s = f(net, act)
        return s * (1.0 - s)
    if act == "tanh":
        return 1.0 - np.tanh(net) ** 2
    return (net > 0).astype(net.dtype)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def from_kernel_layout(p):
    """Our storage (emb = V^T etc.) -> the equations' matrices."""
    return dict(V=p.emb.T.astype(np.float64), U=p.rec.astype(np.float64), th_j=p.bh.astype(np.float64),
                W=p.out_w.astype(np.float64), th_k=p.bo.astype(np.float64),
                Wc=p.cls_w.astype(np.float64), th_c=p.bc.astype(np.float64))


def output_distribution(P, s, classes, class_starts):
    """y over all N words from hidden state s: full softmax, or P(c) * P(w | c) when classes is set."""
    net_k = P["W"] @ s + P["th_k"]
    if classes is None:
        return softmax(net_k)
    pc = softmax(P["Wc"] @ s + P["th_c"])
    y = np.empty_like(net_k)
    for c in range(len(class_starts) - 1):
        lo, hi = class_starts[c], class_starts[c + 1]
        y[lo:hi] = pc[c] * softmax(net_k[lo:hi])
    return y


def window(P, x, d, h0, act="sigmoid", cost="ce", classes=None, class_starts=None,
           independent=False, eos=0, h_init=1.0, mask=None):
    """One truncated-BPTT window over B streams.

    x, d: (T, B) input words and target words; h0: (B, M) previous state (a constant).
    Returns (C, Delta) with C the cost and Delta the dict of weight changes for eta = 1
    (i.e. Delta = -dC/dparam). `mask` (T, B) of booleans: only those steps' costs count.
    """
    T, B = x.shape
    M = P["U"].shape[0]
    N = P["W"].shape[0]
    D = {k: np.zeros_like(v) for k, v in P.items()}
    cost_total = 0.0
    for b in range(B):
        s_prev = h0[b].astype(np.float64)
        nets, states, prevs = [], [], []
        for t in range(T):
            w = x[t, b]
            if independent and w == eos:
                s_prev = np.full(M, h_init)
            # forward, equations 1-2: V x(t) is column w of V
            net_j = P["V"][:, w] + P["U"] @ s_prev + P["th_j"]
            s = f(net_j, act)
            nets.append(net_j); states.append(s); prevs.append(s_prev)
            s_prev = s
        # output layer and output deltas per step
        err_out = []  # sum_k delta_k w[k, j] for each t
        for t in range(T):
            s = states[t]
            tgt = d[t, b]
            if mask is not None and not mask[t, b]:
                err_out.append(np.zeros(M))
                continue
            if classes is None:
                y = softmax(P["W"] @ s + P["th_k"])
                dvec = np.zeros(N); dvec[tgt] = 1.0
                if cost == "ce":
                    cost_total += -np.log(y[tgt])
                    delta_k = dvec - y
                else:
                    cost_total += 0.5 * np.sum((dvec - y) ** 2)
                    J = np.diag(y) - np.outer(y, y)       # dy_o / dnet_k = y_o([o = k] - y_k)
                    delta_k = J.T @ (dvec - y)            # sum_o (d_o - y_o) dy_o/dnet_k
                D["W"] += np.outer(delta_k, s)
                D["th_k"] += delta_k
                err_out.append(P["W"].T @ delta_k)
            else:
                c = classes[tgt]
                lo, hi = class_starts[c], class_starts[c + 1]
                yc = softmax(P["Wc"] @ s + P["th_c"])
                yw = softmax(P["W"][lo:hi] @ s + P["th_k"][lo:hi])
                cost_total += -np.log(yc[c]) - np.log(yw[tgt - lo])
                dc = -yc; dc[c] += 1.0
                dw = -yw; dw[tgt - lo] += 1.0
                D["Wc"] += np.outer(dc, s); D["th_c"] += dc
                D["W"][lo:hi] += np.outer(dw, s); D["th_k"][lo:hi] += dw
                err_out.append(P["Wc"].T @ dc + P["W"][lo:hi].T @ dw)
        # hidden deltas back through time: delta_j(t) = f'(net_j(t)) (sum_k delta_k w_kj + e_j(t+1))
        e_next = np.zeros(M)
        for t in range(T - 1, -1, -1):
            delta_j = fprime(nets[t], act) * (err_out[t] + e_next)
            D["V"][:, x[t, b]] += delta_j
            D["U"] += np.outer(delta_j, prevs[t])
            D["th_j"] += delta_j
            e_next = P["U"].T @ delta_j            # e_j(t) = sum_h delta_h(t+1) u[h, j]
            if independent and x[t, b] == eos:     # the state before a reset is a constant
                e_next = np.zeros(M)
    return cost_total, D


def window_cost(P, *args, **kw):
    """The truncated objective alone (for central differences)."""
    return window(P, *args, **kw)[0]


def sgd(P, D, eta, beta=0.0, scale=1.0, touched=None):
    """w <- w + eta * scale * Delta w - eta * beta * w (the equations' update with L2).

    L2 acts on the weights an update touches: `touched` maps a block name to a boolean mask
    (default: every weight), e.g. only the columns of V of the window's input words.
    """
    out = {}
    for k in P:
        mask = np.ones(P[k].shape, bool) if touched is None or k not in touched else touched[k]
        out[k] = P[k] + eta * scale * D[k] - eta * beta * P[k] * mask
    return out


def rnnlm_schedule(P, x, d, depth, block, eta, beta=0.0, act="sigmoid", classes=None,
                   class_starts=None, independent=False, eos=0, h_init=1.0):
    """rnnlm-0.4b's per-word schedule on one stream, restated step by step with the equations.

    Each word: forward, output deltas, output weights changed at once (Delta w_kj = eta delta_k s_j,
    L2 on the changed rows); its hidden error sum_k delta_k w_kj (before the change) is kept. Every
    `block` words (and after an end of sentence with `independent`) the kept errors are propagated
    back `depth` steps (fewer after a reset or at the start) and V, U, theta_j change once.
    Returns (new P, list of ln p per word).
    """
    P = {k: v.copy() for k, v in P.items()}
    M = P["U"].shape[0]
    s_prev = np.full(M, h_init)
    past = []   # (input word, prev state, net, s, output error) of steps since the last reset
    logps = []
    count = 0
    for t in range(len(x)):
        w = x[t]
        if independent and w == eos:
            s_prev = np.full(M, h_init)
            past = []
        net_j = P["V"][:, w] + P["U"] @ s_prev + P["th_j"]
        s = f(net_j, act)
        tgt = d[t]
        if classes is None:
            y = softmax(P["W"] @ s + P["th_k"])
            logps.append(np.log(y[tgt]))
            dk = -y; dk[tgt] += 1.0
            err = P["W"].T @ dk
            P["W"] += eta * np.outer(dk, s) - eta * beta * P["W"]
            P["th_k"] += eta * dk - eta * beta * P["th_k"]
        else:
            c = classes[tgt]
            lo, hi = class_starts[c], class_starts[c + 1]
            yc = softmax(P["Wc"] @ s + P["th_c"])
            yw = softmax(P["W"][lo:hi] @ s + P["th_k"][lo:hi])
            logps.append(np.log(yc[c]) + np.log(yw[tgt - lo]))
            dc = -yc; dc[c] += 1.0
            dw = -yw; dw[tgt - lo] += 1.0
            err = P["Wc"].T @ dc + P["W"][lo:hi].T @ dw
            P["Wc"] += eta * np.outer(dc, s) - eta * beta * P["Wc"]
            P["th_c"] += eta * dc - eta * beta * P["th_c"]
            P["W"][lo:hi] += eta * np.outer(dw, s) - eta * beta * P["W"][lo:hi]
            P["th_k"][lo:hi] += eta * dw - eta * beta * P["th_k"][lo:hi]
        past.append([w, s_prev, net_j, s, err])
        s_prev = s
        count += 1
        if count % block == 0 or (independent and tgt == eos):
            D = {k: np.zeros_like(P[k]) for k in ("V", "U", "th_j")}
            steps = past[::-1][:depth]           # step t, t-1, ... back at most `depth` steps
            e = np.zeros(M)
            for k, (wk, prev, netk, sk, errk) in enumerate(steps):
                delta_j = fprime(netk, act) * (errk + e)
                D["V"][:, wk] += delta_j
                D["U"] += np.outer(delta_j, prev)
                D["th_j"] += delta_j
                e = P["U"].T @ delta_j
            used = sorted({st[0] for st in steps})
            mask = np.zeros(P["V"].shape, bool); mask[:, used] = True
            P["V"] = P["V"] + eta * D["V"] - eta * beta * P["V"] * mask
            P["U"] = P["U"] + eta * D["U"] - eta * beta * P["U"]
            P["th_j"] = P["th_j"] + eta * D["th_j"] - eta * beta * P["th_j"]
            for st in past:
                st[4] = np.zeros(M)               # errors are propagated once
    return P, logps
