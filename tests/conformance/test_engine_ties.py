"""The comparison engine both ways: other tie-breaking passes, wrong rules fail.

Each implementation here is the reference with one change. "Last index on ties" is a
correct implementation (the spec admits any tied choice); the others break a spec rule
and the engine must catch them on the curated case that shows the rule.
"""

from dataclasses import replace

import numpy as np
import pytest

from conformance.families.ssd import compare as ssd_compare
from conformance.families.ssd import corpus as ssd_corpus
from conformance.families.ssd import strategies as ssd_strategies
from conformance.families.yolo import compare as yolo_compare
from conformance.families.yolo import corpus as yolo_corpus
from conformance.strategies import SATURATED
from implementations.torch_adapter import adapter as torch_adapter
from reference import ssd as rs
from reference import yolo as ry
from reference.cases import SsdCase, SsdSettings, YoloCase


def failures(checks):
    return sorted(c.quantity for c in checks if not c.passed)


def sixteenths(rng, shape) -> np.ndarray:
    """Logits drawn by ``rng`` (a seed or a np.random.Generator) on a 1/16 grid in [-4, 4):
    exact in every dtype tested."""
    return np.random.default_rng(rng).integers(-64, 64, shape) / 16


def one_image_ssd(truths, priors, num_classes, seed, **settings) -> SsdCase:
    """One image: ``truths`` (n, 5) over ``priors`` (P, 4) with loc (1, P, 4) and conf
    (1, P, num_classes) logits drawn with ``seed`` on a 1/16 grid in [-4, 4)."""
    rng = np.random.default_rng(seed)
    return SsdCase(
        loc=sixteenths(rng, (1, len(priors), 4)),
        conf=sixteenths(rng, (1, len(priors), num_classes)),
        priors=priors,
        truths=(np.array(truths, dtype=np.float64),),
        settings=SsdSettings(**settings),
    )


def last_tied(values, axis=-1):
    """argmax that takes the last index among exact ties."""
    flipped = np.flip(values, axis=axis)
    return values.shape[axis] - 1 - np.argmax(flipped, axis=axis)


# ---------------------------------------------------------------- YOLO


def yolo_last_anchor_on_ties(case, dtype="float64"):
    assignments = []
    for x, anchors in zip(case.outputs, case.anchors):
        a = ry.assign(case.targets, anchors, x.shape[-1], case.img_dim, case.settings.ignore_thres)
        assignments.append(replace(a, best_anchor=last_tied(a.wh_iou).astype(np.int64)))
    return ry.evaluate(case, prob_dtype=dtype, assignments=assignments)


def yolo_first_row_wins(case, dtype="float64"):
    """Collisions: the first row wins (the spec says the last)."""
    return ry.evaluate(replace(case, targets=case.targets[::-1].copy()), prob_dtype=dtype)


def yolo_ignore_at_or_above(case, dtype="float64"):
    """Ignore with ≥ instead of > (Y4)."""
    s = replace(case.settings, ignore_thres=np.nextafter(case.settings.ignore_thres, 0))
    return ry.evaluate(replace(case, settings=s), prob_dtype=dtype)


def yolo_no_upper_clamp(case, dtype="float64"):
    """cx = 1.0 dropped instead of clamped into the last cell (Y3)."""
    keep = (case.targets[:, 2] < 1) & (case.targets[:, 3] < 1)
    return ry.evaluate(replace(case, targets=case.targets[keep]), prob_dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_yolo_other_tie_breaking_passes(dtype):
    case = yolo_corpus.y2_best_anchor_tie().astype(dtype)
    ref = ry.evaluate(case, prob_dtype=dtype)
    out = yolo_last_anchor_on_ties(case, dtype)
    assert not np.array_equal(out["layer0.obj_mask"], ref["layer0.obj_mask"]), "the case must have a tie"
    checks = yolo_compare.compare(case, out, dtype)
    assert failures(checks) == []
    assert sum(c.ties for c in checks) > 0


@pytest.mark.parametrize(
    "wrong,case",
    [
        (yolo_first_row_wins, yolo_corpus.y5_two_targets_one_cell),
        (yolo_ignore_at_or_above, yolo_corpus.y4_ignore_exactly_threshold),
        (yolo_no_upper_clamp, yolo_corpus.y3_cx_equal_one),
    ],
)
def test_yolo_wrong_rule_fails(wrong, case):
    c = case()
    assert failures(yolo_compare.compare(c, wrong(c), "float64"))


# ---------------------------------------------------------------- SSD


def ssd_last_prior_on_ties(case, dtype="float64"):
    """Forced priors and mining ties broken by the highest index instead of the lowest."""
    thr = case.settings.threshold
    matches = [
        rs.match(
            t, case.priors, thr, best_prior=last_tied(rs.iou(t[:, :4], rs.point_form(case.priors))) if len(t) else None
        )
        for t in case.truths
    ]
    tg = rs.targets(case, matches)
    score = rs.mining_score(case.conf, tg["conf_t"])
    flipped = rs.hard_negative_mask(score[:, ::-1], tg["pos_mask"][:, ::-1], case.settings.neg_pos)
    return rs.evaluate(case, matches=matches, neg_mask=flipped.neg_mask[:, ::-1].copy())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ssd_two_truths_moved_together_by_last_index_ties(dtype):
    """Truth 0 ties priors 0 and 1, truth 1 ties priors 1 and 2. Last-index ties force
    them onto 1 and 2; from the reference's 0 and 1, moving either truth alone explains no
    more (truth 1 would win prior 1 by IoU), so the search also starts from every group's
    last tied prior (found by a thorough run of tests/zoo's v_ssd_last_ties)."""
    size = 0.1875
    priors = np.array([[0.4375, 0.6875, size, size], [0.5625, 0.6875, size, size], [0.5625, 0.8125, size, size]])
    truths = [[0.46875, 0.59375, 0.515625, 0.78125, 0], [0.46875, 0.64453125, 0.546875, 0.85546875, 0]]
    case = one_image_ssd(truths, priors, 3, seed=1, threshold=0.25).astype(dtype)
    out = ssd_last_prior_on_ties(case, dtype)
    assert not np.array_equal(out["loc_t"], rs.evaluate(case)["loc_t"]), "needs a tie"
    assert failures(ssd_compare.compare(case, out, dtype)) == []


def test_ssd_positive_hidden_from_grad_loc_is_read_from_grad_conf():
    """Two identical truths on two identical priors, threshold 1: prior 1's IoU is exactly
    1 (a float32 threshold tie). Its loc equals loc_t (all 0), so grad_loc is 0 there; its
    grad_conf row still shows the target class (found by a thorough run of tests/zoo's
    v_only_losses_grads, which returns only losses and gradients)."""
    from tests.zoo.adapters import VARIANTS

    box = [0.0, 0.0, 2**-8, 2**-8]
    priors = np.array([[2**-9, 2**-9, 2**-8, 2**-8]] * 2)
    case = SsdCase(
        loc=np.zeros((1, 2, 4)),
        conf=np.zeros((1, 2, 2)),
        priors=priors,
        truths=(np.array([box + [0], box + [0]]),),
        settings=SsdSettings(threshold=1.0),
    ).astype("float32")
    out = VARIANTS["v_only_losses_grads"].ssd(case, "cpu", "float32")
    assert not out["grad_loc"].any()  # no positive shows in grad_loc
    assert failures(ssd_compare.compare(case, out, "float32")) == []


def ssd_earlier_truth_wins(case, dtype="float64"):
    """Forced matching with the earlier truth winning a shared prior (S4 says later)."""
    thr = case.settings.threshold
    matches = []
    for t in case.truths:
        m = rs.match(t[::-1], case.priors, thr)
        n = len(t)
        matches.append(
            replace(
                m,
                matched=np.where(m.matched >= 0, n - 1 - m.matched, -1),
                overlaps=m.overlaps[::-1],
                best_prior=m.best_prior[::-1],
            )
        )
    return rs.evaluate(case, matches=matches)


def ssd_threshold_strict(case, dtype="float64"):
    """IoU exactly at the threshold treated as background (S6 says positive)."""
    s = replace(case.settings, threshold=np.nextafter(case.settings.threshold, 1))
    return rs.evaluate(replace(case, settings=s))


def ssd_global_max_mining(case, dtype="float64"):
    """The seed's mining score: one global max, rows far below it underflow (S9)."""
    out = rs.evaluate(case)
    conf = case.conf.astype(np.float32)
    with np.errstate(divide="ignore"):
        lse = np.log(np.exp(conf - conf.max()).sum(-1)) + conf.max()
    score = np.where(out["pos_mask"], 0, lse - np.take_along_axis(conf, out["conf_t"][..., None], -1)[..., 0])
    mining = rs.hard_negative_mask(score.astype(np.float64), out["pos_mask"], case.settings.neg_pos)
    return rs.evaluate(case, neg_mask=mining.neg_mask)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", [ssd_corpus.s3_best_prior_tie, ssd_corpus.s10_tied_negative_scores])
def test_ssd_other_tie_breaking_passes(case, dtype):
    c = case().astype(dtype)
    out = ssd_last_prior_on_ties(c, dtype)
    ref = rs.evaluate(c)
    assert any(not np.array_equal(out[k], ref[k]) for k in ("matched", "pos_mask", "neg_mask")), "needs a tie"
    checks = ssd_compare.compare(c, out, dtype)
    assert failures(checks) == []
    assert sum(c.ties for c in checks) > 0


def hard_negative_far_below():
    """S9's case with background prior 1 made the hardest negative (score ~100) in a row
    ~400 below the batch's largest logit: float32 exp underflows there with a global max."""
    c = ssd_corpus.s9_mining_scores_far_apart()
    conf = c.conf.copy()
    conf[0, 1] = [-300.0, -200.0, -200.0]
    return replace(c, conf=conf)


@pytest.mark.parametrize(
    "wrong,case",
    [
        (ssd_earlier_truth_wins, ssd_corpus.s4_later_truth_wins),
        (ssd_threshold_strict, ssd_corpus.s6_iou_exactly_half),
        (ssd_global_max_mining, hard_negative_far_below),
    ],
)
def test_ssd_wrong_rule_fails(wrong, case):
    c = case()
    assert failures(ssd_compare.compare(c, wrong(c), "float64"))


def test_mismatch_message_names_count_share_and_index():
    c = ssd_corpus.s4_later_truth_wins()
    bad = [x for x in ssd_compare.compare(c, ssd_earlier_truth_wins(c), "float64") if not x.passed]
    msg = bad[0].message
    assert "Mismatched elements:" in msg and "%" in msg and "index" in msg


# ---------------------------------------------------------------- ties the zoo found (tests/zoo)


def ssd_duplicate_priors():
    """Three identical priors: every truth ties over all three, so last-index tie breaking
    forces all of them onto prior 2, which only a joint move of the truths explains."""
    truths = [
        [0.296875, 0.12109375, 0.98828125, 0.9453125, 0],
        [0.46484375, 0.80859375, 0.5390625, 0.9921875, 1],
        [0.1328125, 0.33203125, 0.97265625, 0.47265625, 1],
        [0.15234375, 0.015625, 0.890625, 0.53125, 0],
    ]
    return one_image_ssd(truths, np.tile([0.5, 0.5, 1.0, 1.0], (3, 1)), num_classes=3, seed=3, neg_pos=1)


def ssd_boxes_overlapping_nothing():
    """Three tiny truths overlapping no prior (all IoUs 0, S5) and one that overlaps prior 0."""
    truths = [
        [0.125, 0.125, 0.12890625, 0.12890625, 0],
        [0, 0, 0.00390625, 0.00390625, 0],
        [0, 0.00390625, 0.00390625, 0.0078125, 0],
        [0, 0.0078125, 0.00390625, 0.01171875, 0],
    ]
    priors = np.array(
        [
            [0.125, 0.125, 0.0625, 0.0625],
            [0.625, 0.625, 0.25, 0.25],
            [0.375, 0.875, 0.25, 0.25],
            [0.875, 0.375, 0.25, 0.25],
        ]
    )
    return one_image_ssd(truths, priors, num_classes=2, seed=4)


KEYS = {
    "every key": None,
    "no matched": ("matched",),
    "losses and gradients only": ("matched", "conf_t", "loc_t", "pos_mask", "neg_mask", "decoded"),
}


@pytest.mark.parametrize("keys", KEYS, ids=list(KEYS))
@pytest.mark.parametrize(
    "case", [ssd_duplicate_priors, ssd_boxes_overlapping_nothing, ssd_corpus.s10_tied_negative_scores]
)
def test_ssd_last_index_ties_pass_whatever_keys_are_returned(case, keys):
    c = case()
    out = ssd_last_prior_on_ties(c)
    ref = rs.evaluate(c)
    assert any(not np.array_equal(out[k], ref[k]) for k in ("matched", "neg_mask")), "needs a tie"
    out = {k: v for k, v in out.items() if k not in (KEYS[keys] or ())}
    assert failures(ssd_compare.compare(c, out, "float64")) == []


def test_yolo_identical_targets_on_an_anchor_tie_are_one_decision():
    """Three identical targets tie between anchors (1, 2) and (2, 1) cells; a fourth on the
    same cell prefers anchor 0. Last-index ties put the three on anchor 1, so anchor 0's
    cell keeps the fourth: only moving the three together explains tx .. th."""
    t = [0, 0, 0, 0, 0.00390625, 0.00390625]
    case = YoloCase(
        outputs=(sixteenths(5, (1, 12, 2, 2)),),
        anchors=(np.array([[1.0, 2.0], [2.0, 1.0]]),),
        targets=np.array([t, [0, 0, 0, 0, 0.00390625, 0.01953125], t, t]),
        num_classes=1,
        img_dim=64.0,
    )
    out = yolo_last_anchor_on_ties(case)
    assert not np.array_equal(out["layer0.th"], ry.evaluate(case)["layer0.th"]), "needs a tie"
    assert failures(yolo_compare.compare(case, out, "float64")) == []


def test_yolo_many_tied_targets_all_moved_by_last_index_ties():
    """Nine targets of different sizes on one cell, two identical anchors: nine tie
    decisions (2**9 combinations, beyond MAX_COMBINATIONS). Last-index ties put all nine on
    anchor 1; moving them one at a time from the reference's choices never empties anchor
    0, so the search starts from every decision's last choice too (found by the property
    test of the anchor_tie feature on tests/zoo's v_yolo_last_anchor_ties)."""
    sides = [(1, h) for h in range(1, 9)] + [(2, 1)]
    case = YoloCase(
        outputs=(np.zeros((1, 12, 1, 1)),),
        anchors=(np.array([[1.0, 1.0], [1.0, 1.0]]),),
        targets=np.array([[0, 0, 0, 0, w / 256, h / 256] for w, h in sides]),
        num_classes=1,
        img_dim=8.0,
    )
    assert 2 ** len(sides) > yolo_compare.MAX_COMBINATIONS
    out = yolo_last_anchor_on_ties(case)
    assert not np.array_equal(out["layer0.obj_mask"], ry.evaluate(case)["layer0.obj_mask"]), "needs a tie"
    checks = yolo_compare.compare(case, out, "float64")
    assert failures(checks) == [] and sum(c.ties for c in checks) > 0


def test_yolo_ignore_tie_hidden_by_a_saturated_noobj_gradient():
    """wh-IoU exactly ignore_thres (0.5) on anchor 1: in float32 either noobj bit is
    admissible. tests/zoo's v_only_losses_grads (BCE by a clamped log1p; no masks returned)
    keeps the cell noobj, but its logit 16.75 saturates σ to 1 in float32, so the clamped
    log leaves a zero gradient there, as an ignored cell would: the losses decide (found by
    the property test of the ignore_threshold feature)."""
    from tests.zoo.adapters import VARIANTS

    x = np.zeros((1, 24, 2, 2))
    x[0, 8 + 4, 0, 0] = 16.75  # anchor 1's conf at cell (0, 0)
    case = YoloCase(
        outputs=(x,),
        anchors=(np.array([[1.0, 1.0], [8.0, 8.0], [4.0, 8.0]]),),
        targets=np.array([[0, 0, 0, 0, 0.25, 0.5], [0, 0, 0, 0, 1 / 256, 1 / 256]]),
        num_classes=3,
        img_dim=16.0,
    )
    out = VARIANTS["v_only_losses_grads"].yolo(case, "cpu", "float32")
    assert out["layer0.grad"].reshape(1, 3, 8, 2, 2)[0, 1, 4, 0, 0] == 0  # hidden by saturation
    assert failures(yolo_compare.compare(case.astype("float32"), out, "float32")) == []


def test_yolo_placements_are_judged_on_tcls_too():
    """Rows 0 and 1 tie on both anchors; last-index ties put both on anchor 1 (row 0 hidden
    by the collision there) and row 2 on anchor 0: only the multi-hot tcls tells it from
    row 0 on anchor 0, row 1 on anchor 1."""
    targets = np.array(
        [[0, 1, 0, 0, 1 / 256, 1 / 256], [0, 0, 0, 0, 1 / 256, 2 / 256], [0, 0, 0, 0, 1 / 256, 0.03515625]]
    )
    case = YoloCase(
        outputs=(sixteenths(6, (1, 14, 1, 1)),),
        anchors=(np.array([[1.0, 2.0], [2.0, 1.0]]),),
        targets=targets,
        num_classes=2,
        img_dim=32.0,
    )
    out = yolo_last_anchor_on_ties(case)
    assert failures(yolo_compare.compare(case, out, "float64")) == []


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_yolo_anchor_tie_without_targets_is_judged_on_losses_and_gradient(dtype):
    """Two identical anchors, saturated logits, only losses and the gradient returned: the
    placement is read from them, with probabilities in the implementation's dtype (Y10)."""
    x = np.random.default_rng(7).choice([-30.0, 0.5, -2.0], size=(1, 22, 1, 1))
    x[0, 4], x[0, 15] = 31.75, 47.25  # conf of anchors 0, 1: both saturate to 1 in float32 only
    case = YoloCase(
        outputs=(x,),
        anchors=(np.array([[1.0, 1.0], [1.0, 1.0]]),),
        targets=np.array([[0, 0, 0, 0, 1 / 256, 1 / 256]]),
        num_classes=6,
        img_dim=1.0,
    )
    out = yolo_last_anchor_on_ties(case, dtype)
    out = {k: v for k, v in out.items() if k.endswith(("grad", "loss_total")) or ".loss_" in k}
    assert failures(yolo_compare.compare(case, out, dtype)) == []


@pytest.mark.parametrize("seed", [5, 11])
def test_yolo_anchor_tie_without_targets_among_saturated_logits(seed):
    """The same with saturated logits everywhere and torch's float32 σ (the zoo's case): raw
    distances of losses and gradients mislead there (Y10 admits values far apart), the
    checks that pass do not."""
    rng = np.random.default_rng(seed)
    x = np.where(
        rng.random((1, 14, 6, 6)) < 0.7,
        rng.choice(SATURATED, (1, 14, 6, 6)),
        rng.integers(-256, 257, (1, 14, 6, 6)) / 64,
    )
    case = YoloCase(
        outputs=(x,),
        anchors=(np.array([[1.0, 1.0], [1.0, 1.0]]),),
        targets=np.array([[0, 1, 0, 0, 1 / 256, 1 / 256]]),
        num_classes=2,
        img_dim=48.0,
    ).astype("float32")
    out = torch_adapter.yolo(case, "cpu", "float32")
    out = {k: v for k, v in out.items() if k.endswith(("grad", "loss_total")) or ".loss_" in k}
    assert failures(yolo_compare.compare(case, out, "float32")) == []


def test_ssd_truths_sharing_a_forced_prior_move_together():
    """Truths tied over different prior sets that last-index tie breaking sends to one prior:
    only moving the truths that share a forced prior together explains it (float32)."""
    truths = [
        [0.3984375, 0.0625, 0.71484375, 0.47265625, 4],
        [0.5, 0.0, 0.5625, 0.0625, 3],
        [0.6875, 0.00390625, 0.7890625, 1.0, 3],
        [0.03125, 0.21875, 0.953125, 0.828125, 3],
    ]
    priors = ssd_strategies.grid_priors(2, (0.25,))
    case = one_image_ssd(truths, priors, num_classes=6, seed=9).astype("float32")
    out = ssd_last_prior_on_ties(case, "float32")
    del out["matched"]
    assert failures(ssd_compare.compare(case, out, "float32")) == []


def test_yolo_many_tied_decisions_are_searched_one_at_a_time():
    """Two identical anchors and nine targets of different sizes: 2**9 placements exceed
    MAX_COMBINATIONS, last-index ties put all nine on anchor 1."""
    sides = (np.arange(9) + 1) / 64
    targets = np.array([[0, 0, (i % 3 + 0.5) / 3, (i // 3 + 0.5) / 3, s, s] for i, s in enumerate(sides)])
    case = YoloCase(
        outputs=(sixteenths(10, (1, 12, 3, 3)),),
        anchors=(np.array([[16.0, 16.0], [16.0, 16.0]]),),
        targets=targets,
        num_classes=1,
        img_dim=48.0,
    )
    out = yolo_last_anchor_on_ties(case)
    assert out["layer0.obj_mask"][0, 1].sum() == 9, "needs the ties"
    assert failures(yolo_compare.compare(case, out, "float64")) == []
