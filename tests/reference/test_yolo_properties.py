"""YOLOv3 float64 reference: gradients against central differences, and Hypothesis invariants."""

import dataclasses

import numpy as np
import pytest
from finite_differences import central_difference
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from reference import yolo
from reference.cases import YoloCase, YoloSettings

S = YoloSettings()


def random_layer(rng, batch, anchors, classes, grid, n_targets, img=64.0, scale=2.0):
    """x (B, A*(C+5), G, G) ~ N(0, scale), anchors in pixels, valid targets (T, 6)."""
    x = rng.normal(0.0, scale, (batch, anchors * (classes + 5), grid, grid))
    anchor_px = rng.uniform(4.0, 40.0, (anchors, 2))
    targets = np.column_stack(
        [
            rng.integers(0, batch, n_targets),
            rng.integers(0, classes, n_targets),
            rng.uniform(0, 1, (n_targets, 2)),
            rng.uniform(0.05, 0.7, (n_targets, 2)),
        ]
    )
    return x, anchor_px, targets.reshape(-1, 6), img


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_matches_central_differences_for_every_term(seed):
    rng = np.random.default_rng(seed)
    # |logits| <= ~6: no log clamp is near; collisions allowed (the masks are fixed by targets)
    x, anchors, targets, img = random_layer(rng, batch=2, anchors=2, classes=3, grid=3, n_targets=5)
    asg = yolo.assign(targets, anchors, 3, img, S.ignore_thres)
    built = yolo.build_targets(x, targets, anchors, 3, img, asg)
    assert built["obj_mask"].any() and built["noobj_mask"].any()
    analytic = yolo.term_gradients(x, built, S)
    for term in yolo.TERMS:
        numeric = central_difference(lambda z: float(yolo.loss_terms(z, built, S)[term]), x.copy())
        assert np.any(analytic[term] != 0), term
        assert_allclose(analytic[term], numeric, rtol=1e-6, atol=1e-8, err_msg=term)
    total = central_difference(lambda z: float(yolo.loss_terms(z, built, S)["loss_total"]), x.copy())
    assert_allclose(yolo.gradient(x, built, S), total, rtol=1e-6, atol=1e-8)


def test_gradient_matches_central_differences_with_custom_scales():
    rng = np.random.default_rng(7)
    s = YoloSettings(obj_scale=3.0, noobj_scale=0.5, ignore_thres=0.3)
    x, anchors, targets, img = random_layer(rng, 1, 3, 2, 2, 3)
    asg = yolo.assign(targets, anchors, 2, img, s.ignore_thres)
    built = yolo.build_targets(x, targets, anchors, 2, img, asg)
    numeric = central_difference(lambda z: float(yolo.loss_terms(z, built, s)["loss_total"]), x.copy())
    assert_allclose(yolo.gradient(x, built, s), numeric, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- Hypothesis

EDGE = [0.0, 1.0, 0.5, 0.25, 1 - 2**-30]


@st.composite
def yolo_cases(draw, layers=1):
    """A valid YoloCase with small random shapes; coordinates include exact edges."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    batch, classes = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    grids = [draw(st.integers(1, 4)) for _ in range(layers)]
    num_anchors = draw(st.integers(1, 3))
    n_targets = draw(st.integers(0, 6))
    outputs, anchor_sets = [], []
    for g in grids:
        x, anchors, _, _ = random_layer(
            rng, batch, num_anchors, classes, g, 0, scale=draw(st.sampled_from([1.0, 5.0, 30.0]))
        )
        outputs.append(x)
        anchor_sets.append(anchors)
    _, _, targets, _ = random_layer(rng, batch, 1, classes, 1, n_targets)
    edges = draw(
        st.lists(st.tuples(st.integers(0, max(n_targets - 1, 0)), st.integers(2, 3), st.sampled_from(EDGE)), max_size=3)
    )
    for row, col, value in edges:
        if n_targets:
            targets[row, col] = value
    ignore = draw(st.sampled_from([0.5, 0.0, 0.3, 1.0]))
    return YoloCase(
        outputs=tuple(outputs),
        anchors=tuple(anchor_sets),
        targets=targets,
        num_classes=classes,
        img_dim=64.0,
        settings=YoloSettings(ignore_thres=ignore),
    )


@settings(max_examples=60, deadline=None)
@given(yolo_cases(), st.sampled_from(["float64", "float32", "float16"]))
def test_masks_disjoint_and_losses_finite(case, prob_dtype):
    res = yolo.evaluate(case, prob_dtype=prob_dtype)
    obj, noobj = res["layer0.obj_mask"], res["layer0.noobj_mask"]
    assert not (obj & noobj).any()
    assert obj.sum() <= len(case.targets)
    assert (obj.sum() > 0) == (len(case.targets) > 0)
    for key, value in res.items():
        if "loss" in key or key.endswith(".grad"):
            assert np.all(np.isfinite(value)), key
    assert np.all(res["layer0.tcls"][~obj] == 0)
    assert np.all((res["layer0.iou_scores"] >= 0) & (res["layer0.iou_scores"] <= 1))


@settings(max_examples=40, deadline=None)
@given(yolo_cases(layers=2), st.randoms(use_true_random=False))
def test_permuting_images_permutes_outputs(case, random):
    batch = case.outputs[0].shape[0]
    perm = np.array(random.sample(range(batch), batch))  # new image i is old image perm[i]
    inverse = np.argsort(perm)
    targets = case.targets.copy()
    targets[:, 0] = inverse[targets[:, 0].astype(int)]
    permuted = YoloCase(
        outputs=tuple(x[perm] for x in case.outputs),
        anchors=case.anchors,
        targets=targets,
        num_classes=case.num_classes,
        img_dim=case.img_dim,
        settings=case.settings,
    )
    ref, got = yolo.evaluate(case), yolo.evaluate(permuted)
    for key, value in ref.items():
        if value.ndim == 0:
            assert_allclose(got[key], value, rtol=1e-12, err_msg=key)
        else:
            assert_allclose(got[key], value[perm], rtol=1e-12, atol=1e-300, err_msg=key)


@settings(max_examples=40, deadline=None)
@given(yolo_cases(layers=3))
def test_three_layer_total_is_sum_of_independent_layers(case):
    res = yolo.evaluate(case)
    layer_totals = [res[f"layer{k}.loss_total"] for k in range(3)]
    assert_allclose(res["loss_total"], sum(layer_totals), rtol=1e-15)
    for k in range(3):
        alone = YoloCase(
            outputs=(case.outputs[k],),
            anchors=(case.anchors[k],),
            targets=case.targets,
            num_classes=case.num_classes,
            img_dim=case.img_dim,
            settings=case.settings,
        )
        single = yolo.evaluate(alone)
        assert_array_equal(single["layer0.grad"], res[f"layer{k}.grad"])
        assert_array_equal(single["loss_total"], layer_totals[k])


@settings(max_examples=30, deadline=None)
@given(yolo_cases())
def test_evaluate_uses_assignment_overrides(case):
    x, anchors = case.outputs[0], case.anchors[0]
    g = x.shape[2]
    asg = yolo.assign(case.targets, anchors, g, case.img_dim, case.settings.ignore_thres)
    shifted = dataclasses.replace(asg, gi=(asg.gi + 1) % g)
    res = yolo.evaluate(case, assignments=[shifted])
    built = yolo.build_targets(x, case.targets, anchors, case.num_classes, case.img_dim, shifted)
    assert_array_equal(res["layer0.obj_mask"], built["obj_mask"])
    want = yolo.loss_terms(x, built, case.settings)["loss_total"]
    assert_array_equal(res["layer0.loss_total"], want)
    rows = np.nonzero(built["obj_mask"])
    assert set(rows[3].tolist()) <= set(((asg.gi + 1) % g).tolist())
