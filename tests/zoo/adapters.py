"""The zoo: implementations the suite was not written with, as adapters.

MUTANTS break one spec rule each (the suite must fail them); VARIANTS are legitimate
other ways to compute the same losses (the suite must pass them). Each is the outsider
port of tests/zoo/seed_yolo.py or tests/zoo/seed_ssd.py with one flag changed, and each is
also a module attribute, so any of them runs on its own:

    pytest conformance --impl tests.zoo.adapters:m_y5_first_row_wins

(the repository root must be importable, e.g. ``PYTHONPATH=.``).
"""

from __future__ import annotations

from .seed_ssd import SsdFlags, multibox_loss
from .seed_yolo import YoloFlags, yolo_loss

BOTH = ("float64", "float32")
F64, F32 = ("float64",), ("float32",)
YOLO_KEYS = {
    "losses_grads": lambda k: ".loss_" in k or k.endswith(".grad") or k == "loss_total",
    "targets": lambda k: (
        k.split(".", 1)[-1]
        in ("obj_mask", "noobj_mask", "tx", "ty", "tw", "th", "tconf", "tcls", "class_mask", "iou_scores", "output")
    ),
}
SSD_KEYS = {
    "losses_grads": lambda k: k in ("loss_l", "loss_c", "grad_loc", "grad_conf"),
    "targets": lambda k: k in ("matched", "conf_t", "loc_t", "pos_mask", "neg_mask", "decoded"),
}


class ZooAdapter:
    """An adapter (implementations/adapter.py protocol) over the zoo's torch ports, CPU only.

    ``yolo`` / ``ssd`` exist only for the losses given flags; ``keys`` ("all",
    "losses_grads", "targets") limits the returned outputs; ``rule`` says which spec rule
    a mutant breaks or what a variant does differently.
    """

    devices = ("cpu",)

    def __init__(
        self,
        name: str,
        rule: str,
        yolo: YoloFlags | None = None,
        ssd: SsdFlags | None = None,
        dtypes=BOTH,
        keys: str = "all",
    ):
        self.name, self.rule, self.dtypes, self.keys = name, rule, tuple(dtypes), keys
        self.yolo_flags, self.ssd_flags = yolo, ssd
        if yolo is not None:
            self.yolo = self._yolo
        if ssd is not None:
            self.ssd = self._ssd

    def skip_reason(self, device: str) -> str | None:
        return None if device == "cpu" else f"the zoo runs on the CPU only, not {device}"

    def _yolo(self, case, device, dtype):
        out = yolo_loss(case, dtype, self.yolo_flags)
        return out if self.keys == "all" else {k: v for k, v in out.items() if YOLO_KEYS[self.keys](k)}

    def _ssd(self, case, device, dtype):
        out = multibox_loss(case, dtype, self.ssd_flags)
        return out if self.keys == "all" else {k: v for k, v in out.items() if SSD_KEYS[self.keys](k)}

    def __repr__(self) -> str:
        return f"ZooAdapter({self.name!r}: {self.rule})"


def _yolo(name, rule, dtypes=F64, **flags):
    return ZooAdapter(name, rule, yolo=YoloFlags(**flags), dtypes=dtypes)


def _ssd(name, rule, dtypes=F64, **flags):
    return ZooAdapter(name, rule, ssd=SsdFlags(**flags), dtypes=dtypes)


# Mutants run in float64 (exact thresholds, one dtype keeps the run short) unless their bug
# is a matter of float32 rounding or must be caught in both dtypes; variants run in both.


_MUTANTS = [
    # YOLOv3
    _yolo(
        "m_y1_channel_major", "Y1: head viewed (B, C+5, A, G, G) instead of (B, A, C+5, G, G)", layout="channel_major"
    ),
    _yolo(
        "m_y2_side_ratio_anchor", "Y2: best anchor by the smallest side ratio, not the wh-IoU", anchor_rule="side_ratio"
    ),
    _yolo("m_y3_round_cell", "Y3: cell by rounding gx, gy instead of floor", cell="round"),
    _yolo("m_y4_ignore_ge", "Y4: wh-IoU equal to ignore_thres also ignored (>= instead of >)", ignore_op=">="),
    _yolo("m_y4_ignore_best_only", "Y4: noobj cleared at the best anchor only", ignore_other_anchors=False),
    _yolo("m_y5_first_row_wins", "Y5: the first colliding row sets tx .. th, not the last", winner="first"),
    _yolo("m_y5_tcls_one_hot", "Y5: tcls one-hot (winning row) instead of multi-hot", multi_hot=False),
    _yolo("m_y6_tw_linear", "Y6: tw = gw / aw without the log", size_target="linear"),
    _yolo("m_y6_tw_pixel_anchor", "Y6: tw against the anchor in pixels, not grid units", size_target="pixel_anchor"),
    _yolo("m_y7_sum_reduction", "Y7: sums instead of means", reduction="sum"),
    _yolo("m_y7_noobj_scale_100", "Y7: settings.noobj_scale ignored (always 100)", noobj_scale=100.0),
    _yolo(
        "m_y7_log_clamp_50",
        "Y7/Y10: BCE logs clamped at -50 instead of settings.log_clamp",
        dtypes=BOTH,
        bce="log1p",
        log_clamp=-50.0,
    ),
    _yolo(
        "m_y10_bce_with_logits",
        "Y10: BCE from logits (nn.BCEWithLogitsLoss), not from probabilities",
        dtypes=BOTH,
        bce="logits",
    ),
    _yolo("m_y8_empty_mean_nan", "Y8: a mean over no element is NaN (the seed)", empty="nan"),
    _yolo("m_y9_mse_grad_half", "Y9: MSE gradient without its factor 2", mse_grad_factor=1.0),
    _yolo(
        "m_y10_prob_float16", "Y10: conf and class probabilities stored in float16", dtypes=F32, prob_dtype="float16"
    ),
    _yolo("m_y11_class_mask_first_row", "Y11: class_mask from the first colliding row's label", class_mask_row="first"),
    _yolo("m_y12_iou_no_plus_one", "Y12: iou_scores without the +1 pixel convention", iou_plus_one=False),
    _yolo(
        "m_y14_targets_float32",
        "Y14: targets built in float32 (the seed's FloatTensor) in float64",
        target_dtype="float32",
    ),
    # SSD
    _ssd("m_s2_iou_plus_one", "S2: IoU with the +1 pixel convention", iou_plus_one=True),
    _ssd(
        "m_s3_best_prior_by_centre",
        "S3: a truth's forced prior is the nearest centre, not the best IoU",
        best_prior="centre",
    ),
    _ssd("m_s4_earlier_truth_wins", "S4: the earlier truth keeps a shared forced prior", forced="earlier_wins"),
    _ssd("m_s4_no_forced_match", "S4: no forced matching of each truth's best prior", forced="none"),
    _ssd("m_s6_threshold_strict", "S6: IoU equal to the threshold is background (> instead of >=)", threshold_op="<="),
    _ssd("m_s7_variances_swapped", "S7: v0 and v1 swapped in encode", encode="swapped"),
    _ssd("m_s8_decode_xmax_cx_plus_w", "S8: decoded xmax = cx + w", decode_xmax="cx_plus_w"),
    _ssd(
        "m_s9_global_max_lse",
        "S9: the seed's log_sum_exp shifted by one max over the batch",
        dtypes=BOTH,
        logsumexp="global",
    ),
    _ssd("m_s10_pos_scores_ranked", "S10: positives ranked by their cross-entropy, not as 0", zero_pos_scores=False),
    _ssd("m_s10_num_neg_batch", "S10: num_neg from the batch's positives, not the image's", num_neg="batch"),
    _ssd("m_s10_neg_mask_with_pos", "S10: neg_mask keeps mined positives", neg_mask_excludes_pos=False),
    _ssd("m_s10_neg_pos_3", "S10: settings.neg_pos ignored (always 3)", neg_pos=3),
    _ssd("m_s11_normalise_selected", "S11: losses divided by the selected count, not N", normaliser="selected"),
    _ssd("m_s11_smooth_l1_beta_half", "S11: smooth L1 with beta 0.5", beta=0.5),
    _ssd("m_s12_no_positives_nan", "S12: N = 0 gives NaN (the seed)", empty="nan"),
    _ssd(
        "m_s13_empty_image_negatives",
        "S13: an image without truths mines neg_pos negatives",
        empty_image_negatives=True,
    ),
    _ssd(
        "m_ssd_conf_float16",
        "numerics: conf stored in float16 before logsumexp and cross-entropy",
        dtypes=F32,
        conf_dtype="float16",
    ),
    _ssd(
        "m_ssd_inputs_clamped_in_place",
        "inputs: clamps the caller's conf to [-10, 10] in place",
        clamp_inputs_in_place=10.0,
    ),
]

_VARIANTS = [
    _ssd("v_ssd_seed", "the seed port: torch.max matching, sort/rank mining, no `matched`", dtypes=BOTH),
    _ssd("v_ssd_seed_matched", "the seed port, also returning `matched`", dtypes=BOTH, return_matched=True),
    _ssd("v_ssd_last_ties", "argmax takes the last tied prior / truth", dtypes=BOTH, ties="last"),
    _ssd("v_ssd_topk_mining", "hard negatives by torch.topk instead of sort/rank", dtypes=BOTH, mining="topk"),
    _ssd(
        "v_ssd_scatter_forced", "forced matching by scatter_reduce amax of truth indices", dtypes=BOTH, forced="scatter"
    ),
    _ssd(
        "v_ssd_encode_reciprocal",
        "encode multiplies by 1 / (v0 * w) instead of dividing",
        dtypes=BOTH,
        encode="reciprocal",
    ),
    _yolo("v_yolo_seed_bceloss", "the seed port with nn.BCELoss and nn.MSELoss", dtypes=BOTH),
    _yolo("v_yolo_bce_log1p", "BCE as -(t log p + (1 - t) log1p(-p)), clamped, own formula", dtypes=BOTH, bce="log1p"),
    _yolo(
        "v_yolo_last_anchor_ties",
        "best anchor takes the last tied index (BCE via log1p)",
        dtypes=BOTH,
        anchor_ties="last",
        bce="log1p",
    ),
    ZooAdapter(
        "v_only_losses_grads",
        "returns losses and gradients only (BCE via log1p)",
        yolo=YoloFlags(bce="log1p"),
        ssd=SsdFlags(),
        keys="losses_grads",
    ),
    ZooAdapter("v_only_targets", "returns targets only", yolo=YoloFlags(), ssd=SsdFlags(), keys="targets"),
]

MUTANTS = {a.name: a for a in _MUTANTS}
VARIANTS = {a.name: a for a in _VARIANTS}
if (
    len(MUTANTS) + len(VARIANTS) != len({*MUTANTS, *VARIANTS})
    or len(MUTANTS) != len(_MUTANTS)
    or len(VARIANTS) != len(_VARIANTS)
):
    raise ValueError("zoo adapter names must be unique")
globals().update(MUTANTS)
globals().update(VARIANTS)
