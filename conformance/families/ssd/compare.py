"""Tie-aware comparison of an SSD implementation's outputs with the reference.

1. What the implementation says about matching is read from whatever it returns: its
   ``matched`` if given, else, at its positive priors, the truths whose label (conf_t)
   and encoding (loc_t) agree with its targets (``_consistent``). The seed never exposes
   its match indices, so none of this may depend on ``matched``. Without targets, the
   gradients tell: its positives are the priors with a non-zero grad_loc row, its hard
   negatives the others with a non-zero grad_conf row, the label and the encoding show in
   grad_conf and grad_loc (used only where a tie admits either choice).
2. Per image, the reference match is computed with its margins. A truth whose best
   prior is a near-tie at the precision's precision may be forced onto any of the tied
   priors; truths tied over the same priors (identical boxes, boxes that overlap no
   prior) move together, one decision. The engine searches the candidates and keeps the forced
   assignment that best explains the implementation's matches and positives.
3. ``matched`` and ``pos_mask`` are exact except at priors whose best truth or threshold
   comparison is a near-tie; conf_t and loc_t are then checked on the implementation's
   own admissible choices.
4. Hard negatives are exact except for priors whose mining score is within the precision's
   error of the image's cut-off; the counts must still be right.
5. Losses and gradients are compared with the reference re-evaluated on the
   implementation's admissible matches, positives and negatives.
"""

from __future__ import annotations

import numpy as np

from conformance import tolerances as tol
from conformance.checks import Check, continuous, discrete
from reference import ssd as rs
from reference.cases import SsdCase
from reference.precision import precision

MAX_SWEEPS = 3
MAX_CANDIDATES = 8


def _impl_pos(impl: dict):
    """(B, P) bool positives the implementation reports: pos_mask, else conf_t > 0, else
    from its gradients: the priors with a non-zero grad_loc row, or a grad_conf row whose
    most negative entry is not the background's (softmax − onehot is negative only at the
    target class). Either alone can miss a positive: grad_loc vanishes where loc equals
    loc_t exactly, grad_conf where the softmax saturates. None when it returns none of them."""
    if "pos_mask" in impl:
        return impl["pos_mask"].astype(bool)
    if "conf_t" in impl:
        return impl["conf_t"] > 0
    if "grad_loc" not in impl and "grad_conf" not in impl:
        return None
    pos = (impl["grad_loc"] != 0).any(axis=-1) if "grad_loc" in impl else False
    if "grad_conf" in impl:
        g = impl["grad_conf"]
        pos = pos | ((g.min(axis=-1) < 0) & (g.argmin(axis=-1) != 0))
    return pos


def _impl_neg(impl: dict, pos):
    """(B, P) bool hard negatives the implementation reports: neg_mask, else the priors
    outside ``pos`` with a non-zero grad_conf row (softmax − onehot vanishes only for a
    saturated row, whose gradient is 0 either way); None when it returns neither."""
    if "neg_mask" in impl:
        return impl["neg_mask"].astype(bool)
    return (impl["grad_conf"] != 0).any(axis=-1) & ~pos if "grad_conf" in impl else None


def _consistent(truths, case, i, impl, impl_pos, u) -> np.ndarray:
    """(n, P) bool: truth j agrees with what the implementation returned at prior p.

    With ``matched``: exactly its truth. Otherwise, at the implementation's positive
    priors, the truths that fit its targets best: the label of conf_t (else the class
    whose grad_conf entry is negative: softmax − onehot is negative only at the target),
    then loc_t within its error bound (else grad_loc = smooth-L1'(loc − loc_t) / N); at
    other priors nothing is observed and every truth agrees.
    """
    n, P = len(truths), len(case.priors)
    if "matched" in impl:
        return impl["matched"][i].astype(np.int64)[None, :] == np.arange(n)[:, None]
    ok = np.ones((n, P), bool)
    if impl_pos is None or not n:
        return ok
    at = np.flatnonzero(impl_pos[i])
    k = len(at)
    cost = np.zeros((n, k))
    if "conf_t" in impl or "grad_conf" in impl:
        label = impl["conf_t"][i][at] if "conf_t" in impl else impl["grad_conf"][i][at].argmin(axis=-1)
        cost += 2 * (truths[:, 4:5] + 1 != label[None])
    if ("loc_t" in impl or "grad_loc" in impl) and k:
        priors = np.tile(case.priors[at], (n, 1))
        enc = rs.encode(np.repeat(truths[:, :4], k, axis=0), priors, case.settings.variances)
        bound = tol.SAFETY * encode_error(enc, priors[:, 2:], case.settings.variances, u)
        if "loc_t" in impl:
            off = np.abs(enc - np.tile(impl["loc_t"][i][at], (n, 1))) > bound
        else:
            n_pos = max(int(impl_pos.sum()), 1)
            d = np.tile(case.loc[i][at], (n, 1)) - enc
            slope = np.where(np.abs(d) < 1, d, np.sign(d)) / n_pos
            off = np.abs(slope - np.tile(impl["grad_loc"][i][at], (n, 1))) > (bound + 8 * u) / n_pos
        cost += off.any(axis=1).reshape(n, k)
    ok[:, at] = cost == cost.min(axis=0, initial=np.inf)
    return ok


def _near_best(m, eps) -> np.ndarray:
    """(n, P) bool: truth j's IoU with prior p is within eps of the best truth's."""
    return m.overlaps >= m.overlaps.max(axis=0) - eps["iou"]


def _resolve(m, ok, eps):
    """Per prior, the truth the implementation is taken to have matched under ``m``, and
    whether that is admissible: the forced truth at forced priors; elsewhere the
    reference's truth if it agrees with the implementation, else the first agreeing truth
    whose IoU is a near-tie with the best."""
    P = m.overlaps.shape[1]
    forced = m.overlap == 2
    mine = ok[m.matched, np.arange(P)]
    other = ok & _near_best(m, eps)
    alt = other.any(axis=0)
    chosen = np.where(~forced & ~mine & alt, other.argmax(axis=0), m.matched)
    return chosen, np.where(forced, mine, mine | alt)


def _explain_score(m, ok, impl_pos, threshold, eps, prec) -> int:
    """Number of priors where the implementation's match or positive flag is not
    admissible under ``m``."""
    wrong = int((~_resolve(m, ok, eps)[1]).sum()) if len(m.best_prior) else 0
    if impl_pos is not None:
        wrong_pos = (impl_pos != (m.overlap >= threshold)) & ~tol.threshold_tie(m.threshold_margin, eps["iou"], prec)
        wrong += int(wrong_pos.sum())
    return wrong


def _match_image(truths, case, ok, impl_pos, eps, prec):
    """The reference Match for one image that best explains the implementation's outputs,
    and the number of truths forced elsewhere than the reference's choice.

    Truths whose best prior is a near-tie may be forced onto any tied prior; truths tied
    over the same priors (identical boxes, boxes overlapping no prior) are one decision. The
    search starts from the best of the reference's choices, each group's likeliest
    candidate (a positive the implementation gave to that group) and each group's last
    tied prior (a last-index argmax), then improves one group (then one truth, then the
    truths sharing a forced prior) at a time for MAX_SWEEPS sweeps: linear in the
    candidates, where trying every combination would be exponential in the tied truths.
    """
    threshold = case.settings.threshold
    m = rs.match(truths, case.priors, threshold)
    near = np.flatnonzero(m.best_prior_margin < eps["iou"])
    if not len(near) or (impl_pos is None and ok.all()):
        return m, 0
    tied: dict = {}  # truths tied over the same priors: a deterministic argmax picks alike
    tied_to = {}  # truth -> its tied priors
    for j in near:
        cand = tied_to[j] = np.flatnonzero(m.overlaps[j] >= m.overlaps[j, m.best_prior[j]] - eps["iou"])
        tied.setdefault(cand.tobytes(), (cand, []))[1].append(j)
    groups, alts = [], []
    for cand, members in tied.values():
        g = np.array(members)
        theirs = ok[g][:, cand].any(axis=0)
        pos = impl_pos[cand] if impl_pos is not None else np.ones(len(cand), bool)
        rank = np.where(pos & theirs, 0, np.where(pos, 1, 2))
        groups.append(g)
        alts.append(cand[np.argsort(rank, kind="stable")][:MAX_CANDIDATES])

    def explain(bp):
        cand = rs.match(truths, case.priors, threshold, best_prior=bp)
        return cand, _explain_score(cand, ok, impl_pos, threshold, eps, prec)

    best, best_score = m, _explain_score(m, ok, impl_pos, threshold, eps, prec)
    # other starts: every group's likeliest candidate, and every group's last tied prior
    # (an argmax that takes the last index; moving one truth there at a time may not
    # improve, as when one truth's last prior is another's first)
    cands = [cand for cand, _ in tied.values()]
    for starts in ([a[0] for a in alts], [c.max() for c in cands]):
        if best_score:
            bp = m.best_prior.copy()
            for g, c in zip(groups, starts):
                bp[g] = c
            start, score = explain(bp)
            if score < best_score:
                best, best_score = start, score
    moves = list(zip(groups, alts))  # whole groups first, then single truths of larger groups
    moves += [(np.array([j]), a) for g, a in zip(groups, alts) if len(g) > 1 for j in g]
    for _ in range(MAX_SWEEPS):
        improved = False
        for g, a in moves + _shared_moves(best.best_prior, near, tied_to):
            for c in a:
                if best_score == 0 or c == best.best_prior[g[0]]:
                    continue
                bp = best.best_prior.copy()
                bp[g] = c
                cand, score = explain(bp)
                if score < best_score:
                    best, best_score, improved = cand, score, True
        if not improved:
            break
    return best, int(np.sum(best.best_prior != m.best_prior))


def _shared_moves(best_prior, near, tied_to):
    """Moves of every tied truth now forced onto one prior, together, to another prior tied
    for each of them: a deterministic argmax that sends one there sends the others too."""
    moves = []
    for q in np.unique(best_prior[near]):
        together = near[best_prior[near] == q]
        if len(together) > 1:
            common = set(tied_to[together[0]].tolist()).intersection(*(tied_to[j].tolist() for j in together[1:]))
            moves.append((together, np.array(sorted(common - {int(q)}), dtype=np.int64)))
    return moves


def _decided_targets(case, matched, pos):
    """conf_t (B, P) and loc_t (B, P, 4) for chosen matches and positives, by the reference's
    rules (S6, S7); index −1 (no truth) reads a padding row that no positive uses."""
    B, P = matched.shape
    pad = np.array([[0.0, 0.0, 1.0, 1.0, -1.0]])
    rows = np.stack([np.vstack([t, pad])[matched[i]] for i, t in enumerate(case.truths)])
    conf_t = np.where(pos, rows[..., 4].astype(np.int64) + 1, 0)
    loc_t = rs.encode(rows[..., :4].reshape(-1, 4), np.tile(case.priors, (B, 1)), case.settings.variances)
    return conf_t, np.where(pos[..., None], loc_t.reshape(B, P, 4), 0.0)


def compare(case: SsdCase, out: dict, prec, parts=("targets", "losses", "gradients")):
    """All checks of one SSD case. ``case`` is already rounded to ``prec``
    (a Precision or its name)."""
    prec = precision(prec)
    eps, u = tol.decision_eps(prec), prec.u
    impl = {k: np.asarray(v) for k, v in out.items()}
    B, P, _ = case.loc.shape
    impl_pos = _impl_pos(impl)
    matches, forced_ties = [], 0
    adm_match = np.zeros((B, P), bool)  # another truth than the reference's is admissible
    adm_pos = np.zeros((B, P), bool)  # the positive flag hangs on a threshold near-tie
    matched = np.full((B, P), -1, np.int64)  # the truths the implementation is judged on
    for i, t in enumerate(case.truths):
        ok = _consistent(t, case, i, impl, impl_pos, u)
        m, ties = _match_image(t, case, ok, None if impl_pos is None else impl_pos[i], eps, prec)
        matches.append(m)
        forced_ties += ties
        matched[i] = m.matched
        if len(t):
            chosen, admissible = _resolve(m, ok, eps)
            adm_match[i] = admissible & (m.overlap != 2)
            matched[i] = np.where(admissible, chosen, m.matched)
            adm_pos[i] = tol.threshold_tie(m.threshold_margin, eps["iou"], prec)
    ref = rs.targets(case, matches)
    pos = ref["pos_mask"] if impl_pos is None else np.where(adm_pos, impl_pos, ref["pos_mask"])
    conf_t, loc_t = _decided_targets(case, matched, pos)
    score = rs.mining_score(case.conf, conf_t)
    mining = rs.hard_negative_mask(score, pos, case.settings.neg_pos)
    score_eps = eps["score"] * (np.log2(case.num_classes) + 4) * (1 + np.abs(case.conf).max(axis=(1, 2)))
    adm_neg = (mining.margin < score_eps[:, None]) & ~pos
    impl_neg = _impl_neg(impl, pos)
    neg = mining.neg_mask if impl_neg is None else np.where(adm_neg, impl_neg, mining.neg_mask)
    checks: list[Check] = []
    if "targets" in parts:
        checks += _target_checks(
            impl,
            ref,
            matched,
            pos,
            conf_t,
            loc_t,
            mining,
            adm_match,
            adm_pos,
            adm_neg,
            forced_ties,
            score_eps,
            case,
            prec,
        )
    if "losses" in parts or "gradients" in parts:
        loss = rs.multibox_loss(case.loc, case.conf, loc_t, conf_t, pos, neg)
        n_pos = max(int(pos.sum()), 1)
        loc_err = loc_t_bound(loc_t, case, pos, u)
        ce_err = (np.log2(case.num_classes) + 4) * u * (1 + np.abs(case.conf).max(axis=2))
        sel = pos | neg
        ties = forced_ties + int(adm_neg.sum())
        if "losses" in parts:
            bl = loc_err[pos].sum() / n_pos + tol.sum_factor(4 * int(pos.sum())) * u * float(loss["loss_l"])
            bc = ce_err[sel].sum() / n_pos + tol.sum_factor(int(sel.sum())) * u * float(loss["loss_c"])
            for key, bound in (("loss_l", bl), ("loss_c", bc)):
                if key in impl:
                    checks.append(continuous(key, impl[key], loss[key], tol.SAFETY * bound, prec, ties=ties))
        if "gradients" in parts:
            gl = tol.allowed(loss["grad_loc"], u, rtol=4 * u) + tol.SAFETY * np.where(
                pos[..., None], loc_err / n_pos, 0
            )
            gc = (
                tol.allowed(loss["grad_conf"], u, rtol=4 * u) + tol.SAFETY * np.where(sel, ce_err / n_pos, 0)[..., None]
            )
            for key, bound in (("grad_loc", gl), ("grad_conf", gc)):
                if key in impl:
                    checks.append(continuous(key, impl[key], loss[key], bound, prec, ties=ties))
    return checks


def _target_checks(
    impl, ref, matched, pos, conf_t, loc_t, mining, adm_match, adm_pos, adm_neg, forced_ties, score_eps, case, prec
):
    u = prec.u
    checks = []
    if "matched" in impl:
        checks.append(
            discrete(
                "matched",
                impl["matched"],
                ref["matched"],
                admissible=adm_match,
                ties=forced_ties + int((adm_match & (impl["matched"] != ref["matched"])).sum()),
            )
        )
    if "pos_mask" in impl:
        checks.append(discrete("pos_mask", impl["pos_mask"].astype(bool), ref["pos_mask"], admissible=adm_pos))
    if "conf_t" in impl:
        checks.append(discrete("conf_t", impl["conf_t"], conf_t))
    if "loc_t" in impl:
        checks.append(
            continuous(
                "loc_t",
                impl["loc_t"],
                loc_t,
                tol.SAFETY * loc_t_bound(loc_t, case, pos, u),
                prec,
                where=np.broadcast_to(pos[..., None], loc_t.shape),
            )
        )
    if "neg_mask" in impl:
        checks.append(discrete("neg_mask", impl["neg_mask"].astype(bool), mining.neg_mask, admissible=adm_neg))
        # The mined set holds num_neg priors, positives (score 0) included; positives inside
        # the cut-off's tie band may or may not take a place, so the count of hard
        # negatives may move by that many, never above num_neg.
        mined = impl["neg_mask"].astype(bool).sum(axis=1)
        ref_count = mining.neg_mask.sum(axis=1)
        slack = (pos & (mining.margin < score_eps[:, None])).sum(axis=1)
        ok = (mined >= ref_count - slack) & (mined <= np.minimum(ref_count + slack, mining.num_neg))
        checks.append(discrete("neg_count", mined, ref_count, admissible=ok))
    if "decoded" in impl:
        ref_dec = rs.decode(case.loc, case.priors, case.settings.variances)
        checks.append(continuous("decoded", impl["decoded"], ref_dec, decoded_bound(ref_dec, case, u), prec))
    return checks


def loc_t_bound(loc_t, case, pos, u):
    """Error of the encoded targets (B, P, 4) at positives (0 elsewhere), unscaled."""
    err = encode_error(loc_t, case.priors[None, :, 2:4], case.settings.variances, u)
    return np.where(pos[..., None], err, 0.0)


def encode_error(loc_t, prior_wh, variances, u):
    """Error of encoded targets loc_t (..., 4) against priors of size prior_wh (..., 2), unscaled.

    centre: (cx_g − cx_p) / (v0·w_p): the centre and the difference carry 2u absolute
    (coordinates ≤ 1), the division by v0·w_p amplifies by 1 / (v0·w_p), plus 2u relative.
    size: log(w_g / w_p) / v1 with w_g = x2 − x1: absolute error u, i.e. relative u / w_g
    (cancellation for tiny boxes), plus 2u for the division and the log, all / v1.
    """
    v0, v1 = variances
    centre = 2 * u / (v0 * prior_wh) + 2 * u * np.abs(loc_t[..., :2])
    wg = prior_wh * np.exp(loc_t[..., 2:] * v1)
    size = (u / np.maximum(wg, np.finfo(float).tiny) + 2 * u) / v1 + u * np.abs(loc_t[..., 2:])
    return np.concatenate([centre, size], axis=-1)


def decoded_bound(ref_dec, case, u):
    """Decoded corners: centre cx_p + l·v0·w_p has error ~3u·(1 + |l·v0·w_p|); the size
    w_p·exp(l·v1) has relative error (|l·v1| + 3)u, halved into each corner."""
    v0, v1 = case.settings.variances
    pri = case.priors[None]
    half = np.abs(ref_dec[..., 2:] - ref_dec[..., :2]) / 2
    size_err = (np.abs(case.loc[..., 2:]) * v1 + 3) * u * half
    centre_err = 3 * u * (1 + np.abs(case.loc[..., :2]) * v0 * pri[..., 2:])
    e = centre_err + size_err + u * np.abs(ref_dec[..., :2])
    return tol.SAFETY * np.concatenate([e, centre_err + size_err + u * np.abs(ref_dec[..., 2:])], axis=-1)
