"""Tie-aware comparison of a YOLOv3 implementation's outputs with the reference.

For each layer:
1. The reference's assignment (best anchor and cell per target) is computed with its
   margins. A decision whose margin is below the precision's decision epsilon has several
   admissible outcomes; targets with equal inputs (the same w, h; the same cx; the same
   cy) are one decision. The engine tries each combination (beyond MAX_COMBINATIONS, the
   reference's choices, every decision's lowest and every decision's highest, then one
   decision at a time) and keeps the one that best explains the implementation: fewest
   obj_mask differences, then the nearest tx .. th and tcls (or, without them, the losses
   and gradient that pass best).
2. Masks are compared exactly, except noobj_mask cells decided by a near-tie ignore
   comparison and class_mask cells decided by a near-tie class argmax.
3. Losses and gradients are compared with the reference re-evaluated on the
   implementation's own admissible choices (its placements and its noobj_mask).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from conformance import tolerances as tol
from conformance.checks import Check, continuous, discrete
from reference import yolo as ry
from reference.cases import YoloCase
from reference.outputs import layer_key
from reference.precision import precision

MAX_COMBINATIONS = 256  # beyond, decisions are improved one at a time
MAX_SWEEPS = 3
BCE_EPS = float(np.float32(1e-12))  # torch's BCELoss backward: max(p(1 - p), 1e-12f), a float32 constant
TARGET_KEYS = ("tx", "ty", "tw", "th")


def _decisions(assignment, targets, grid, eps):
    """The near-tie decisions of one layer: (field, rows, choices), the reference's choice
    first. Rows with equal inputs make one decision, as a deterministic argmax or floor
    decides them alike: the best anchor per distinct (w, h), the column per distinct cx,
    the row per distinct cy."""
    out = []
    if not len(targets):
        return out
    near_cell = eps["cell"] * grid
    # which rows have more than one admissible outcome (grouped below only where some has)
    best = np.take_along_axis(assignment.wh_iou, assignment.best_anchor[:, None], axis=1)
    gxy = targets[:, 2:4] * grid
    cells = np.clip(np.floor(np.stack([gxy - near_cell, gxy + near_cell])), 0, grid - 1)
    open_rows = {
        "best_anchor": (assignment.wh_iou >= best - eps["iou"]).sum(axis=1) > 1,
        "gi": cells[0, :, 0] != cells[1, :, 0],
        "gj": cells[0, :, 1] != cells[1, :, 1],
    }
    for field, cols in (("best_anchor", slice(4, 6)), ("gi", slice(2, 3)), ("gj", slice(3, 4))):
        if not open_rows[field].any():
            continue
        keys = targets[:, cols]
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        for group, t in enumerate(first):
            ref = int(getattr(assignment, field)[t])
            if field == "best_anchor":
                choices = np.flatnonzero(assignment.wh_iou[t] >= assignment.wh_iou[t, ref] - eps["iou"])
            else:
                g = keys[t, 0] * grid
                choices = np.unique(np.clip(np.floor(g + np.array([-near_cell, 0.0, near_cell])), 0, grid - 1))
            if len(choices) > 1:
                rows = np.flatnonzero(inverse.ravel() == group)
                out.append((field, rows, [ref] + [int(c) for c in choices if c != ref]))
    return out


def _distance(case, k, impl, a, built, eps, prec):
    """How far the implementation's layer targets (tx .. th, tcls at obj cells) are from
    ``built``; without them, how badly its losses and gradient fail against the reference
    re-evaluated on ``a`` (number of failing checks, then their summed excess): raw
    distances mislead there, saturated BCE terms admit values far apart (Y10)."""
    obj = built["obj_mask"] & impl.get("obj_mask", built["obj_mask"]).astype(bool)
    keys = [key for key in TARGET_KEYS + ("tcls",) if key in impl]
    if keys:
        return (
            0,
            float(sum(np.nan_to_num(np.abs(impl[key][obj] - built[key][obj]), nan=np.inf).sum() for key in keys)),
        )
    return _failing(_judge(case, k, impl, a, built, 0, eps, prec, ("losses", "gradients"))[0])


def _choose(case, k, impl, eps, prec):
    """The reference assignment that best explains the implementation's layer-k outputs
    ``impl`` (keys without the layer prefix): fewest obj_mask differences, then the
    nearest targets (or the losses and gradient that pass best)."""
    x, anchors = case.outputs[k], case.anchors[k]
    grid = x.shape[-1]
    args = (x, case.targets, anchors, case.num_classes, case.img_dim)
    nominal = ry.assign(case.targets, anchors, grid, case.img_dim, case.settings.ignore_thres)
    decisions = _decisions(nominal, case.targets, grid, eps)
    if not decisions:
        return nominal, ry.build_targets(*args, nominal), 0
    impl_obj = impl.get("obj_mask")
    close = 1e-3 * max(1, len(case.targets))  # targets of different rows differ by far more

    def explain(combo):
        fields = {f: getattr(nominal, f).copy() for f in ("best_anchor", "gi", "gj")}
        for (field, rows, _), choice in zip(decisions, combo):
            fields[field][rows] = choice
        a = replace(nominal, **fields)
        built = ry.build_targets(*args, a)
        mismatched = 0 if impl_obj is None else int(np.sum(np.asarray(impl_obj, bool) != built["obj_mask"]))
        return (a, built), (mismatched, *_distance(case, k, impl, a, built, eps, prec))

    def explained(score):
        return score[:2] == (0, 0) and score[2] <= close

    choices = [c for _, _, c in decisions]
    if np.prod([len(c) for c in choices], dtype=float) <= MAX_COMBINATIONS:  # every combination
        best, best_score = None, (np.inf, np.inf, np.inf)
        for combo in itertools.product(*choices):
            found, score = explain(combo)
            if score < best_score:
                best, best_score = found, score
            if explained(score):
                break
    else:  # one decision at a time, MAX_SWEEPS sweeps, from the best of three starts: the
        # reference's choices, and every decision's lowest and highest choice, as an argmax
        # that takes the first or the last tied index (or a floor rounding down or up) makes
        best, best_score, combo = None, (np.inf, np.inf, np.inf), None
        for start in ([c[0] for c in choices], [min(c) for c in choices], [max(c) for c in choices]):
            found, score = explain(start)
            if score < best_score:
                best, best_score, combo = found, score, start
        for _ in range(MAX_SWEEPS):
            improved = False
            for d, options in enumerate(choices):
                for option in options:
                    if explained(best_score) or option == combo[d]:
                        continue
                    found, score = explain(combo[:d] + [option] + combo[d + 1 :])
                    if score < best_score:
                        best, best_score, improved = found, score, True
                        combo[d] = option
            if not improved:
                break
    a, built = best
    ties = int(np.sum((a.best_anchor != nominal.best_anchor) | (a.gi != nominal.gi) | (a.gj != nominal.gj)))
    return a, built, ties


def _impl_noobj(impl, built, num_classes, admissible):
    """The (B, A, G, G) bool noobj masks the implementation's outputs admit where an ignore
    near-tie (``admissible``) lets it choose: [its noobj_mask] when it returns one; from its
    gradient, the non-obj cells with a non-zero conf-channel gradient, and, where some
    admissible cell's gradient is 0, also that mask with those cells flipped (a zero
    gradient is an ignored cell or a noobj cell whose σ saturated, 0 or 1 with the log
    clamped: the losses tell them apart); [] when it returns neither."""
    if "noobj_mask" in impl:
        return [impl["noobj_mask"].astype(bool)]
    if "grad" not in impl:
        return []
    B, A, G, _ = built["obj_mask"].shape
    zero = (impl["grad"].reshape(B, A, num_classes + 5, G, G)[:, :, 4] == 0) & ~built["obj_mask"]
    hidden = zero & admissible
    return [~zero & ~built["obj_mask"]] + ([~zero & ~built["obj_mask"] | hidden] if hidden.any() else [])


def _noobj_admissible(a, targets, shape, eps, prec):
    """Cells whose noobj bit hangs on a near-tie ignore comparison."""
    adm = np.zeros(shape, bool)
    t, anc = np.nonzero(tol.threshold_tie(a.ignore_margin, eps["iou"], prec))
    b = targets[t, 0].astype(np.int64)
    adm[b, anc, a.gj[t], a.gi[t]] = True
    return adm


def compare(case: YoloCase, out: dict, prec, parts=("targets", "losses", "gradients")):
    """All checks of one YOLOv3 case. ``case`` is already rounded to ``prec``
    (a Precision or its name)."""
    prec = precision(prec)
    eps = tol.decision_eps(prec)
    checks: list[Check] = []
    total, total_ties = None, 0  # the admissible totals summed over layers
    for k in range(len(case.outputs)):
        pre = layer_key(k, "")
        impl = {key[len(pre) :]: np.asarray(v) for key, v in out.items() if key.startswith(pre)}
        a, built, ties = _choose(case, k, impl, eps, prec)
        layer_checks, layer_total = _judge(case, k, impl, a, built, ties, eps, prec, parts)
        checks += layer_checks
        if layer_total is not None:
            total = layer_total if total is None else total + layer_total
            total_ties += ties
    if "losses" in parts and "loss_total" in out:
        checks.append(_set_check("loss_total", out["loss_total"], total, prec, total_ties))
    return checks


def _judge(case, k, impl, a, built, ties, eps, prec, parts):
    """The checks of layer k's outputs ``impl`` (keys without the layer prefix) against the
    reference built on assignment ``a``, and the layer's admissible loss_total (None
    without the losses part). Where an ignore near-tie admits either noobj bit, the
    reference is re-evaluated on the implementation's own choice (``_impl_noobj``; of two
    candidates, the one whose losses and gradient fail fewest checks)."""
    noobj_adm = _noobj_admissible(a, case.targets, built["noobj_mask"].shape, eps, prec)
    checks = _target_checks(k, impl, built, noobj_adm, ties, case, eps, prec) if "targets" in parts else []
    options = [
        np.where(noobj_adm, m, built["noobj_mask"]) for m in _impl_noobj(impl, built, case.num_classes, noobj_adm)
    ]
    evaluations = [dict(built, noobj_mask=m) for m in options] or [built]
    judged = [_judge_values(case, k, impl, e, ties, prec, parts) for e in evaluations]
    value_checks, total = min(judged, key=lambda j: _failing(j[0]))
    return checks + value_checks, total


def _failing(checks) -> tuple:
    """(number of failing checks, their summed excess ratio): lower explains better."""
    failed = [c for c in checks if not c.passed]
    return (len(failed), float(sum(min(c.ratio, 1e300) for c in failed)))


def _judge_values(case, k, impl, evaluated, ties, prec, parts):
    """The loss and gradient checks of layer k against the reference on ``evaluated`` (the
    built targets, with the noobj_mask judged), and the admissible loss_total."""
    x, pre = case.outputs[k], layer_key(k, "")
    checks, total = [], None
    if "losses" in parts:
        ref_losses = ry.loss_terms(x, evaluated, case.settings, prob_dtype=prec.name)
        sets = loss_sets(x, evaluated, case, k, ref_losses, prec)
        checks += [_set_check(pre + key, impl[key], sets[key], prec, ties) for key in ref_losses if key in impl]
        total = sets["loss_total"]
    if "gradients" in parts and "grad" in impl:
        g = ry.gradient(x, evaluated, case.settings, prob_dtype=prec.name)
        p = _probabilities(x, case.num_classes, prec)
        checks.append(
            continuous(
                pre + "grad",
                impl["grad"],
                g,
                grad_bound(x, p, evaluated, g, case, k, prec),
                prec,
                ties=ties,
                alternatives=(bce_loss_gradient(g, p),),
            )
        )
    return checks, total


def _target_checks(k, impl, built, noobj_adm, ties, case, eps, prec):
    pre, x, u = layer_key(k, ""), case.outputs[k], prec.u
    grid = x.shape[-1]
    obj = built["obj_mask"]
    checks = []
    if "obj_mask" in impl:
        checks.append(discrete(pre + "obj_mask", impl["obj_mask"].astype(bool), obj, ties=ties))
    if "noobj_mask" in impl:
        checks.append(
            discrete(pre + "noobj_mask", impl["noobj_mask"].astype(bool), built["noobj_mask"], admissible=noobj_adm)
        )
    if "tconf" in impl:
        checks.append(discrete(pre + "tconf", impl["tconf"], built["tconf"]))
    if "tcls" in impl:
        checks.append(
            discrete(
                pre + "tcls", impl["tcls"], built["tcls"], where=np.broadcast_to(obj[..., None], built["tcls"].shape)
            )
        )
    if "class_mask" in impl:
        checks.append(
            discrete(
                pre + "class_mask",
                impl["class_mask"],
                built["class_mask"],
                where=obj,
                admissible=built["class_margin"] < eps["prob"],
            )
        )
    # tx, ty: gx = cx·G is one rounded product (error u·G); subtracting the cell index is exact.
    # tw, th: the log of a ratio with ≤ 4 roundings in it (size_target_error).
    for key in ("tx", "ty", "tw", "th"):
        if key in impl:
            if key in ("tx", "ty"):
                allowed = tol.allowed(built[key], u, atol=u * grid)
            else:
                allowed = tol.SAFETY * size_target_error(built[key], case, k, prec)
            checks.append(continuous(pre + key, impl[key], built[key], allowed, prec, where=obj, ties=ties))
    # iou_scores: boxes from σ + cell (error u·G) and exp(t)·anchor (relative (|t| + 3)u);
    # the +1-convention IoU of such boxes has absolute error ≲ 8u·(G + 1 + max|t|).
    if "iou_scores" in impl:
        tmax = float(np.abs(x).max(initial=0))
        checks.append(
            continuous(
                pre + "iou_scores",
                impl["iou_scores"],
                built["iou_scores"],
                tol.allowed(built["iou_scores"], u, 8 * u * (grid + 1 + tmax)),
                prec,
                where=obj,
                ties=ties,
            )
        )
    if "output" in impl:
        ref = ry.decode(x, case.anchors[k], case.num_classes, case.img_dim)
        overflow = np.where(np.abs(ref) > prec.largest, np.copysign(np.inf, ref), ref)  # exp(t)·anchor
        checks.append(
            continuous(
                pre + "output", impl["output"], ref, output_bound(x, ref, case, k, prec), prec, alternatives=(overflow,)
            )
        )
    return checks


def size_target_error(tw, case, k, prec):
    """Error of tw = log(gw / aw + 1e-16): gw / aw carries ≤ 4 roundings (w·G, anchor /
    stride twice, the division), so 4u absolute after the log; the log itself adds
    transcendental(prec)·u·|tw|, or, where an implementation takes log gw − log aw, that
    much of |log gw| + |log aw| ≤ |tw| + 2|log aw|."""
    u, grid = prec.u, case.outputs[k].shape[-1]
    log_aw = float(np.abs(np.log(case.anchors[k] * grid / case.img_dim)).max())
    return 4 * u + prec.transcendental * u * (np.abs(tw) + 2 * log_aw)


def output_bound(x, ref, case, k, prec):
    """Decoded output: xy = (σ + cell)·stride has error ≤ 3u·img_dim; wh = exp(t)·anchor has
    relative error (|t| + transcendental(prec))u, and exp(t) may underflow below the
    smallest normal number (absolute error that much times the anchor); conf and cls are σ
    outputs, relative 2u."""
    u = prec.u
    t = _logits(x, case.num_classes).reshape(ref.shape)
    bound = np.empty_like(ref)
    bound[..., :2] = 3 * u * case.img_dim
    bound[..., 2:4] = (np.abs(t[..., 2:4]) + prec.transcendental) * u * np.abs(
        ref[..., 2:4]
    ) + prec.smallest_normal * float(np.max(case.anchors[k]))
    bound[..., 4:] = 2 * u * np.abs(ref[..., 4:]) + u
    return tol.SAFETY * bound


def _probabilities(x, num_classes, prec):
    """(B, A, G, G, 1 + C): σ of the conf and class logits, rounded to ``prec`` (Y10)."""
    return prec.round(ry.sigmoid(_logits(x, num_classes)[..., 4:]))


def _logits(x, num_classes):
    """x (B, A·(C+5), G, G) viewed as (B, A, G, G, C+5), channels last."""
    B, AC, G, _ = x.shape
    return np.moveaxis(x.reshape(B, AC // (num_classes + 5), num_classes + 5, G, G), 2, -1)


def bce_values(z, t, prec, clamp):
    """Admissible values of the clamped BCE term bce(σ(z), t), t ∈ {0, 1}, in ``prec`` (Y10).

    Returns (lo, hi, alt), each shaped like z: the term lies in [lo, hi], or, where alt is
    set, equals −clamp exactly. The term depends on s = σ(−|z|) ≤ 1/2, the distance of p
    from 0 (z < 0) or from 1 (z ≥ 0): 1 − p' is exact on the grid k·u for p' ≥ 1/2, p' < 1/2
    has the precision's own spacing. [lo, hi] is the term for s' within two steps of s
    (σ's own error), plus the log's rounding. When s' = 0 is a faithful rounding of s
    (s below one step), or p < the smallest normal (flush to zero), the "far" log
    (log(1 − p) with p → 1, log p with p → 0) is infinite and the term jumps to −clamp:
    that alternative is the only value where s rounds to nearest to 0, and nothing in
    between is admissible.
    """
    u, c = prec.u, -clamp
    z, t = np.broadcast_arrays(np.asarray(z, np.float64), np.asarray(t, np.float64))
    near_one = z >= 0
    s = ry.sigmoid(-np.abs(z))
    step = np.where(near_one, u, prec.spacing(s))
    rn = np.where(near_one, np.rint(s / u) * u, prec.round(s))
    lo_s, hi_s = np.maximum(rn - 2 * step, 0.0), rn + 2 * step
    far = near_one != (t == 1)  # the log that saturates: of 1 − p near 1, of p near 0
    smallest = np.where(near_one, u, prec.smallest_subnormal)
    with np.errstate(divide="ignore"):
        lo_far = np.minimum(-np.log(hi_s), c)
        hi_far = np.minimum(-np.log(np.maximum(lo_s, smallest)), c)
    lo_near, hi_near = -np.log1p(-lo_s) - u, -np.log1p(-hi_s) + u  # 1 − p' rounds: u more
    saturated = far & (rn == 0)
    lo = np.where(saturated, c, np.where(far, lo_far, lo_near))
    hi = np.where(saturated, c, np.where(far, hi_far, hi_near))
    alt = far & ~saturated & ((s < step) | (~near_one & (s < prec.smallest_normal)))
    err = tol.SAFETY * (prec.transcendental * u * np.abs(hi) + 2 * u)
    return lo - err, hi + err, alt


def _bce_mean(z, t, mask, prec, clamp):
    """Admissible values of the mean of bce(σ(z), t) over ``mask``, with the sum's rounding."""
    n = int(mask.sum())
    if n == 0:
        return tol.Intervals.around(0.0)
    lo, hi, alt = bce_values(z[mask], t[mask], prec, clamp)
    mean = tol.Intervals.choice_sum(lo, hi, alt, -clamp) * (1.0 / n)
    return mean + tol.Intervals.around(0.0, tol.SAFETY * tol.sum_factor(n) * prec.u * mean.hi[-1])


def loss_sets(x, built, case, k, ref_losses, prec):
    """Admissible values (``tol.Intervals``) of every loss term of one layer.

    MSE terms: each difference carries error ε (σ: 2u; tx: u·G; tw: 4u + u|tw|);
    mean(2|d|ε + ε²) ≤ 2ε·sqrt(loss) + ε² by Cauchy–Schwarz. BCE terms: each element one
    of the values of ``bce_values``, so the means are unions of intervals.
    """
    u = prec.u
    G = x.shape[-1]
    obj, noobj = built["obj_mask"], built["noobj_mask"]
    n_obj = int(obj.sum())
    settings = case.settings
    sets = {}
    for key, target, eps in (
        ("loss_x", "tx", (2 + G) * u),
        ("loss_y", "ty", (2 + G) * u),
        ("loss_w", "tw", None),
        ("loss_h", "th", None),
    ):
        if eps is None:
            eps = float(size_target_error(np.abs(built[target][obj]).max(initial=0), case, k, prec))
        loss = float(ref_losses[key])
        bound = 2 * eps * np.sqrt(loss) + eps**2 + tol.sum_factor(n_obj) * u * loss if n_obj else 0.0
        sets[key] = tol.Intervals.around(loss, tol.SAFETY * bound)
    z = _logits(x, case.num_classes)
    clamp = settings.log_clamp
    sets["loss_conf_obj"] = _bce_mean(z[..., 4], np.ones(obj.shape), obj, prec, clamp)
    sets["loss_conf_noobj"] = _bce_mean(z[..., 4], np.zeros(obj.shape), noobj, prec, clamp)
    sets["loss_cls"] = _bce_mean(
        z[..., 5:], built["tcls"], np.broadcast_to(obj[..., None], built["tcls"].shape), prec, clamp
    )

    def rounding(key, ops):
        return tol.Intervals.around(0.0, tol.SAFETY * ops * u * abs(float(ref_losses[key])))

    sets["loss_conf"] = (
        settings.obj_scale * sets["loss_conf_obj"]
        + settings.noobj_scale * sets["loss_conf_noobj"]
        + rounding("loss_conf", 2)
    )
    total = rounding("loss_total", 6)
    for key in ("loss_x", "loss_y", "loss_w", "loss_h", "loss_conf", "loss_cls"):
        total = total + sets[key]
    sets["loss_total"] = total
    return sets


def _set_check(quantity, actual, admissible, prec, ties):
    """Check ``actual`` against the nearest admissible value (one more rounding allowed)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = admissible.nearest(float(actual)) if actual.shape == () else float(admissible.lo[0])
    note = f"admissible values (Y10): {admissible!r}" if len(admissible.lo) > 1 else ""
    return continuous(quantity, actual, expected, tol.SAFETY * prec.u * abs(expected), prec, ties=ties, note=note)


def bce_loss_gradient(g, p):
    """g (shaped like x) as torch's BCELoss backward gives it: its BCE channels scaled by
    p(1 − p) / max(p(1 − p), BCE_EPS), the epsilon of BCELoss's derivative (Y9); ``p`` from
    ``_probabilities``."""
    B, A, G = p.shape[0], p.shape[1], p.shape[2]
    scale = np.ones((B, A, G, G, p.shape[-1] + 4))
    var = p * (1 - p)
    scale[..., 4:] = var / np.maximum(var, BCE_EPS)
    return g * np.moveaxis(scale, -1, 2).reshape(g.shape)


def grad_bound(x, p, built, g, case, k, prec):
    """Gradient of one layer: each element is a short chain (≤ 8 roundings) of its own
    inputs, so relative error 8u, plus the error of its target scaled by the mean's 2/n
    (tx: u·G, tw: ``size_target_error``) and, for BCE terms, the conditioning of p (from
    ``_probabilities``) near 0 or 1:
    where the rounded probability sits within a few ulps of a clamp the derivative is
    ill-conditioned and may be anything between 0 and its unclamped value."""
    u = prec.u
    B, AC, G, _ = x.shape
    C = case.num_classes
    A = AC // (C + 5)
    obj = built["obj_mask"]
    n_obj = max(int(obj.sum()), 1)
    bound = np.moveaxis((8 * u * np.abs(g)).reshape(B, A, C + 5, G, G), 2, -1).copy()
    tw_max = float(np.abs(np.stack([built["tw"], built["th"]])[:, obj]).max(initial=0))
    bound[..., 0:2] += np.where(obj, 2 / n_obj * (G + 2) * u, 0)[..., None]
    bound[..., 2:4] += np.where(obj, 2 / n_obj * size_target_error(tw_max, case, k, prec), 0)[..., None]
    n_noobj = max(int(built["noobj_mask"].sum()), 1)
    weight = np.concatenate(
        [
            (case.settings.obj_scale / n_obj * obj + case.settings.noobj_scale / n_noobj * built["noobj_mask"])[
                ..., None
            ],
            np.broadcast_to((obj / (n_obj * C))[..., None], p[..., 1:].shape),
        ],
        axis=-1,
    )
    saturated = (p <= 8 * u) | (1 - p <= 8 * u)
    # d bce / d z = weight·(p − t): p carries 2u relative error, which (p − t) does not
    # shrink when p is close to t (cancellation). Through the chain rule an implementation
    # divides by its rounded 1 − p (t = 0) or p (t = 1), so the derivative inherits BCE's
    # conditioning: relative error 2u·p/(1 − p), resp. 2u·(1 − p)/p.
    t = np.concatenate([obj[..., None].astype(float), built["tcls"]], axis=-1)
    g_last = np.moveaxis(np.abs(g).reshape(B, A, C + 5, G, G), 2, -1)[..., 4:]
    with np.errstate(divide="ignore", invalid="ignore"):  # inf·0 only where saturated
        cond = np.where(t == 1, (1 - p) / p, p / (1 - p))
        bound[..., 4:] += np.where(saturated, weight, weight * 2 * u * p + 2 * u * cond * g_last)
    return tol.SAFETY * np.moveaxis(bound, -1, 2).reshape(x.shape)
