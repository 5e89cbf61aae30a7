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


def dropout_factors(seed, t, M, p, salt=0):
    """Inverted-dropout factors of units 0..M-1 at word t (0 with probability p, else 1 / (1 - p)),
    drawn as the kernels draw them: splitmix64 of seed + t * golden + (j + salt) * c; salt 2**32 for
    the output mask. Returns ones for p = 0."""
    if p == 0.0:
        return np.ones(M)
    u64 = np.uint64
    with np.errstate(over="ignore"):
        j = np.arange(M, dtype=u64) + u64(salt)
        z = np.full(M, u64(seed)) + np.full(M, u64(t)) * u64(0x9E3779B97F4A7C15) + j * u64(0xD1B54A32D192ED03)
        z = (z ^ (z >> u64(30))) * u64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> u64(27))) * u64(0x94D049BB133111EB)
        z = z ^ (z >> u64(31))
    u = (z >> u64(11)).astype(np.float64) / 2.0 ** 53
    return np.where(u < p, 0.0, 1.0 / (1.0 - p))


def from_kernel_layout(p):
    """Our storage (emb = V^T etc.) -> the equations' matrices."""
    return dict(V=p.emb.T.astype(np.float64), U=p.rec.astype(np.float64), th_j=p.bh.astype(np.float64),
                W=p.out_w.astype(np.float64), th_k=p.bo.astype(np.float64),
                Wc=p.cls_w.astype(np.float64), th_c=p.bc.astype(np.float64), dir=p.direct.astype(np.float64))


PRIMES = [108641969, 116049371, 125925907, 133333309, 145678979, 175308587, 197530793, 234567803,
          251851741, 264197411, 330864029, 399999781, 407407183, 459258997, 479012069, 545678687,
          560493491, 607407037, 629629243, 656789717, 716048933, 718518067, 725925469, 733332871,
          753085943, 755555077, 782715551, 790122953, 812345159, 814814293, 893826581, 923456189,
          940740127, 953085797, 985184539, 990122807]


def direct_features(hist, K, cls, size, n):
    """rnnlm-0.4b's direct connections, restated from its computeNet: for each of the n output units
    of a block (the classes if cls is None, else the words of class cls), the list of indices into
    the direct table whose weights are added to that unit's logit. hist[0] is the current input word.
    """
    half = size // 2
    h = []
    for o in range(K):
        if o > 0 and hist[o - 1] < 0:
            h += [0] * (K - o)
            break
        v = (PRIMES[0] * PRIMES[1]) % 2 ** 32          # unsigned 32-bit product in the C source
        if cls is not None:
            v = v * (int(cls) + 1) % 2 ** 64
        for k in range(1, o + 1):
            v = (v + PRIMES[(o * PRIMES[k] + k) % 2 ** 32 % 36] * (int(hist[k - 1]) + 1)) % 2 ** 64
        h.append(v % half + (half if cls is not None else 0))
    out = []
    for _ in range(n):
        idx = []
        for o in range(K):
            if h[o] == 0:
                break
            idx.append(h[o])
            h[o] = (h[o] + 1) % size if cls is not None else h[o] + 1
        out.append(idx)
    return out


def direct_logits(P, feats):
    return np.array([P["dir"][f].sum() for f in feats]) if feats else 0.0


def direct_delta(D, feats, delta):
    for i, f in enumerate(feats):
        for j in f:
            D["dir"][j] += delta[i]


def class_outputs(P, s, hist, K, size, c, class_starts):
    """At state s, target class c: the class distribution yc and the distribution yw over the words
    of class c (direct features of history `hist` included), with those features (fc, fw)."""
    lo, hi = class_starts[c], class_starts[c + 1]
    fc = direct_features(hist, K, None, size, len(P["th_c"]))
    fw = direct_features(hist, K, c, size, hi - lo)
    yc = softmax(P["Wc"] @ s + P["th_c"] + direct_logits(P, fc))
    yw = softmax(P["W"][lo:hi] @ s + P["th_k"][lo:hi] + direct_logits(P, fw))
    return lo, hi, fc, fw, yc, yw


def histories(x, ng0, K, independent, eos):
    """hist[t][b]: input words of stream b at steps t, t-1, ... (K - 1 of them; carried in from ng0)."""
    T, B = x.shape
    out = [[None] * B for _ in range(T)]
    for b in range(B):
        cur = list(ng0[b])
        for t in range(T):
            cur = [eos] * len(cur) if (independent and x[t, b] == eos) else [x[t, b]] + cur[:-1]
            out[t][b] = cur
    return out


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


def hs_output(P, s, tgt, tree):
    """Hierarchical softmax (tree = (start, node, code), word w's path node[start[w]:start[w+1]]):
    (ln p(tgt | s), the path's nodes, their deltas -dC/dz = (1 - code) - sigmoid(z)), with
    p(tgt | s) = prod over the path of sigmoid(z) (code 0) or 1 - sigmoid(z) (code 1),
    z = W[n] . s + theta_n."""
    start, node, code = tree
    nodes = np.asarray(node[start[tgt]:start[tgt + 1]])
    codes = np.asarray(code[start[tgt]:start[tgt + 1]], dtype=np.float64)
    z = P["W"][nodes] @ s + P["th_k"][nodes]
    sig = 1.0 / (1.0 + np.exp(-z))
    return float(np.log(np.where(codes == 0, sig, 1.0 - sig)).sum()), nodes, (1.0 - codes) - sig


def hs_distribution(P, s, tree):
    """p(w | s) of every word under the hierarchical softmax."""
    return np.array([np.exp(hs_output(P, s, w, tree)[0]) for w in range(len(tree[0]) - 1)])


def window(P, x, d, h0, act="sigmoid", cost="ce", classes=None, class_starts=None,
           independent=False, eos=0, h_init=1.0, mask=None, dorder=3, ng0=None, drop_in=None, drop_out=None,
           tree=None):
    """One truncated-BPTT window over B streams.

    x, d: (T, B) input words and target words; h0: (B, M) previous state (a constant).
    Returns (C, Delta) with C the cost and Delta the dict of weight changes for eta = 1
    (i.e. Delta = -dC/dparam). `mask` (T, B) of booleans: only those steps' costs count.
    With P["dir"] non-empty, direct connections of order `dorder` add to the output logits, the
    n-gram history carried in from ng0 (B, >= dorder - 1). Dropout: drop_in / drop_out (T, B, M)
    factors multiply the input word's column of V and the state the output layer reads.
    """
    T, B = x.shape
    M = P["U"].shape[0]
    N = P["W"].shape[0]
    D = {k: np.zeros_like(v) for k, v in P.items()}
    cost_total = 0.0
    size = len(P.get("dir", ()))
    K = dorder if size else 0
    hists = histories(x, ng0 if ng0 is not None else np.full((B, max(dorder - 1, 1)), eos), K,
                      independent, eos)
    for b in range(B):
        s_prev = h0[b].astype(np.float64)
        nets, states, prevs = [], [], []
        for t in range(T):
            w = x[t, b]
            if independent and w == eos:
                s_prev = np.full(M, h_init)
            # forward, equations 1-2: V x(t) is column w of V
            mi = drop_in[t, b] if drop_in is not None else 1.0
            net_j = P["V"][:, w] * mi + P["U"] @ s_prev + P["th_j"]
            s = f(net_j, act)
            nets.append(net_j); states.append(s); prevs.append(s_prev)
            s_prev = s
        # output layer and output deltas per step
        err_out = []  # sum_k delta_k w[k, j] for each t
        for t in range(T):
            mo = drop_out[t, b] if drop_out is not None else np.ones(M)
            s = states[t] * mo
            tgt = d[t, b]
            if mask is not None and not mask[t, b]:
                err_out.append(np.zeros(M))
                continue
            hist = hists[t][b]
            if tree is not None:
                lp, nodes, dz = hs_output(P, s, tgt, tree)
                cost_total += -lp
                D["W"][nodes] += np.outer(dz, s)
                D["th_k"][nodes] += dz
                err_out.append(mo * (P["W"][nodes].T @ dz))
            elif classes is None:
                fw = direct_features(hist, K, 0, size, N)
                y = softmax(P["W"] @ s + P["th_k"] + direct_logits(P, fw))
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
                direct_delta(D, fw, delta_k)
                err_out.append(mo * (P["W"].T @ delta_k))
            else:
                c = classes[tgt]
                lo, hi, fc, fw, yc, yw = class_outputs(P, s, hist, K, size, c, class_starts)
                cost_total += -np.log(yc[c]) - np.log(yw[tgt - lo])
                dc = -yc; dc[c] += 1.0
                dw = -yw; dw[tgt - lo] += 1.0
                direct_delta(D, fc, dc)
                direct_delta(D, fw, dw)
                D["Wc"] += np.outer(dc, s); D["th_c"] += dc
                D["W"][lo:hi] += np.outer(dw, s); D["th_k"][lo:hi] += dw
                err_out.append(mo * (P["Wc"].T @ dc + P["W"][lo:hi].T @ dw))
        # hidden deltas back through time: delta_j(t) = f'(net_j(t)) (sum_k delta_k w_kj + e_j(t+1))
        e_next = np.zeros(M)
        for t in range(T - 1, -1, -1):
            delta_j = fprime(nets[t], act) * (err_out[t] + e_next)
            D["V"][:, x[t, b]] += delta_j * (drop_in[t, b] if drop_in is not None else 1.0)
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
                   class_starts=None, independent=False, eos=0, h_init=1.0, dorder=3, use_bias=True,
                   l2_every=1, drop_in=0.0, drop_out=0.0, drop_seed=0, tree=None, tie=False):
    """rnnlm-0.4b's per-word schedule on one stream, restated step by step with the equations.

    Each word: forward, output deltas, output weights changed at once (Delta w_kj = eta delta_k s_j,
    L2 on the changed rows); its hidden error sum_k delta_k w_kj (before the change) is kept. Every
    `block` words (and after an end of sentence with `independent`) the kept errors are propagated
    back `depth` steps (fewer after a reset or at the start) and V, U, theta_j change once.
    As rnnlm-0.4b: direct connections (P["dir"]) change with every word, their L2 every time; the
    output and hidden weights get their L2 only when the word count is a multiple of `l2_every`;
    without `use_bias` the biases do not change. Dropout: word t's column of V is read times
    dropout_factors(drop_seed, t, M, drop_in), the output layer reads s times
    dropout_factors(drop_seed, t, M, drop_out, 2**32); the recurrence reads s itself.
    With `tie` (weight tying) V is W transposed, one matrix: column w of V and row w of W are the
    same numbers, and every change to either is a change to both.
    Returns (new P, list of ln p per word).
    """
    P = {k: v.copy() for k, v in P.items()}
    if tie:
        P["V"] = P["W"].T                         # a view: one matrix
    M = P["U"].shape[0]
    size = len(P.get("dir", ()))
    K = dorder if size else 0
    hist = [eos] * max(dorder - 1, 1)
    s_prev = np.full(M, h_init)
    past = []   # (input word, prev state, net, s, output error) of steps since the last reset
    logps = []
    count = 0
    bmask = 1.0 if use_bias else 0.0

    def dir_update(feats, delta):
        for i, fl in enumerate(feats):
            for j in fl:
                P["dir"][j] += eta * delta[i] - eta * beta * P["dir"][j]

    for t in range(len(x)):
        w = x[t]
        if independent and w == eos:
            s_prev = np.full(M, h_init)
            past = []
            hist = [eos] * len(hist)
        else:
            hist = [w] + hist[:-1]
        b2 = beta if (count + 1) % l2_every == 0 else 0.0
        mi = dropout_factors(drop_seed, count, M, drop_in)
        mo = dropout_factors(drop_seed, count, M, drop_out, 2 ** 32)
        net_j = P["V"][:, w] * mi + P["U"] @ s_prev + P["th_j"]
        s_rec = f(net_j, act)
        s = s_rec * mo                            # what the output layer reads
        tgt = d[t]
        if tree is not None:                      # hierarchical softmax: the path's rows change
            lp, nodes, dz = hs_output(P, s, tgt, tree)
            logps.append(lp)
            err = mo * (P["W"][nodes].T @ dz)
            P["W"][nodes] += eta * np.outer(dz, s) - eta * b2 * P["W"][nodes]
            P["th_k"][nodes] += bmask * (eta * dz - eta * b2 * P["th_k"][nodes])
        elif classes is None:
            fw = direct_features(hist, K, 0, size, len(P["th_k"]))
            y = softmax(P["W"] @ s + P["th_k"] + direct_logits(P, fw))
            logps.append(np.log(y[tgt]))
            dk = -y; dk[tgt] += 1.0
            err = mo * (P["W"].T @ dk)
            dir_update(fw, dk)
            P["W"] += eta * np.outer(dk, s) - eta * b2 * P["W"]
            P["th_k"] += bmask * (eta * dk - eta * b2 * P["th_k"])
        else:
            c = classes[tgt]
            lo, hi, fc, fw, yc, yw = class_outputs(P, s, hist, K, size, c, class_starts)
            logps.append(np.log(yc[c]) + np.log(yw[tgt - lo]))
            dc = -yc; dc[c] += 1.0
            dw = -yw; dw[tgt - lo] += 1.0
            err = mo * (P["Wc"].T @ dc + P["W"][lo:hi].T @ dw)
            dir_update(fw, dw)
            dir_update(fc, dc)
            P["Wc"] += eta * np.outer(dc, s) - eta * b2 * P["Wc"]
            P["th_c"] += bmask * (eta * dc - eta * b2 * P["th_c"])
            P["W"][lo:hi] += eta * np.outer(dw, s) - eta * b2 * P["W"][lo:hi]
            P["th_k"][lo:hi] += bmask * (eta * dw - eta * b2 * P["th_k"][lo:hi])
        past.append([w, s_prev, net_j, mi, err])
        s_prev = s_rec
        count += 1
        if count % block == 0 or (independent and tgt == eos):
            b2 = beta if count % l2_every == 0 else 0.0
            D = {k: np.zeros_like(P[k]) for k in ("V", "U", "th_j")}
            steps = past[::-1][:depth]           # step t, t-1, ... back at most `depth` steps
            e = np.zeros(M)
            for k, (wk, prev, netk, mik, errk) in enumerate(steps):
                delta_j = fprime(netk, act) * (errk + e)
                D["V"][:, wk] += delta_j * mik
                D["U"] += np.outer(delta_j, prev)
                D["th_j"] += delta_j
                e = P["U"].T @ delta_j
            used = sorted({st[0] for st in steps})
            mask = np.zeros(P["V"].shape, bool); mask[:, used] = True
            P["V"][...] = P["V"] + eta * D["V"] - eta * b2 * P["V"] * mask   # in place (tie: W too)
            P["U"] = P["U"] + eta * D["U"] - eta * b2 * P["U"]
            P["th_j"] = P["th_j"] + bmask * (eta * D["th_j"] - eta * b2 * P["th_j"])
            for st in past:
                st[4] = np.zeros(M)               # errors are propagated once
    return P, logps
