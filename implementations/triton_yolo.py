"""One YOLOv3 layer's loss (reference/spec/yolo.md, Y1-Y12) as four Triton kernels, float32.

Built in one execution mode (``INTERPRET``: interpreted on CPU, or compiled for CUDA) by
implementations/triton_loss.py's ``load``, with triton_common.py's decorators and helpers
(reductions, exp, log) of the same mode; triton_common.py says how. Imported directly, native.

Kernels of one layer, x (B, A*(C+5), G, G), in launch order:

``_assign_kernel``  grid (ceil(T / BLOCK_T),): each target's best anchor by wh-IoU (Y2, lowest
    index on ties), cell (Y3, cx = 1 in the last cell), and its scatter into three maps: the
    winner row of each (b, anchor, gj, gi) by ``atomic_max`` of the row index (Y5: the last
    row wins on every device and in any program order), noobj cleared at the best anchor and
    at every anchor with wh-IoU > ignore_thres (Y4), tcls set to 1 for every target's label
    (Y5: the union). All writes are order-independent (atomic max, or the same constant).
    Also each target's tx, ty, tw, th (Y3, Y6) and gx, gy, gw, gh, read by the winners' cells.
``_count_kernel``   grid (1,): n_obj and n_noobj, the denominators of the means (Y7).
``_dense_kernel``   grid (ceil(B*A*G*G / BLOCK_G),): BLOCK_G cells of the layer each: decode
    (Y1), obj_mask, tx..th, tconf, class_mask (Y11), iou_scores (Y12) gathered from the winner
    row, the program's seven masked sums of the loss (Y7) and the analytic gradient (Y9), in
    one pass over x.
``_finalize_kernel``  grid (1,): the sums over programs into the nine loss terms (Y7, Y8: a
    mean over nothing is 0) and the layer's loss_total added to the case's total.

Probabilities entering BCE are σ in float32, 1/(1 + e) or e/(1 + e) with e = exp(-|z|) and IEEE
division (``div_rn``): the error of exp (NumPy float32 in the interpreter: up to 2.5 ulp
measured; libdevice's expf on CUDA: 2 ulp documented; ``tl.exp`` there would be ``ex2.approx``)
plus two roundings, which the suite's Y10 check admits. Logs are literal log p and log(1 - p),
clamped below at log_clamp, and a clamped log has zero derivative (Y9). Launches pass
``enable_fp_fusion=False`` so CUDA does not contract a*b + c into FMAs the reference does not make.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from implementations.triton_loss import load
from reference.outputs import YOLO_LOSS_KEYS

INTERPRET: bool = globals().get("INTERPRET", False)  # set by triton_loss.load before the code runs

common = load("triton_common", INTERPRET)  # this mode's copy; kernels call its helpers by these names
kernel, helper = common.kernel, common.helper
_sum, _argmax, _exp, _log = common.sum_, common.argmax, common.exp, common.log

ROW_FIELDS = 8  # per target: tx, ty, tw, th, gx, gy, gw, gh
MAPS = ("tx", "ty", "tw", "th", "tconf", "class_mask", "iou_scores")


@helper
def _sigmoid(z):
    """σ(z) from e = exp(-|z|) <= 1 (no overflow), IEEE division."""
    e = _exp(tl.where(z >= 0, -z, z))
    return tl.where(z >= 0, tl.math.div_rn(1.0, 1.0 + e), tl.math.div_rn(e, 1.0 + e))


@helper
def _clamped_log(p, log_clamp):
    """max(log p, log_clamp), and whether the log is not clamped (it then has a derivative)."""
    live = p > 0
    log_p = tl.where(live, _log(tl.where(live, p, 1.0)), log_clamp)
    live = live & (log_p > log_clamp)
    return tl.maximum(log_p, log_clamp), live


@helper
def _bce(p, t, log_clamp):
    """Clamped BCE on probabilities (Y7) and its derivative in the logit (Y9), elementwise."""
    log_p, live_p = _clamped_log(p, log_clamp)
    log_q, live_q = _clamped_log(1.0 - p, log_clamp)
    loss = -(t * log_p + (1.0 - t) * log_q)
    grad = tl.where(live_q, (1.0 - t) * p, 0.0) - tl.where(live_p, t * (1.0 - p), 0.0)
    return loss, grad


@kernel
def _assign_kernel(
    targets_ptr,
    anchors_ptr,
    win_ptr,
    noobj_ptr,
    tcls_ptr,
    rows_ptr,
    T,
    A,
    G,
    C,
    img_dim,
    ignore_thres,
    BLOCK_T: tl.constexpr,
    BLOCK_A: tl.constexpr,
):
    """Targets (T, 6) [b, class, cx, cy, w, h] and anchors (A, 2) pixels -> win (B*A*G*G,)
    int32 (init -1), noobj (B*A*G*G,) int8 (init 1), tcls (B*A*G*G, C) (init 0), rows (T, 8)."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    t_ok = t < T
    target = targets_ptr + t * 6
    b = tl.load(target + 0, mask=t_ok, other=0.0).to(tl.int32)
    label = tl.load(target + 1, mask=t_ok, other=0.0).to(tl.int32)
    grid = G * 1.0
    gx = tl.load(target + 2, mask=t_ok, other=0.0) * grid
    gy = tl.load(target + 3, mask=t_ok, other=0.0) * grid
    gw = tl.load(target + 4, mask=t_ok, other=1.0) * grid
    gh = tl.load(target + 5, mask=t_ok, other=1.0) * grid
    stride = tl.math.div_rn(img_dim, grid)
    a = tl.arange(0, BLOCK_A)
    a_ok = a < A
    aw = tl.math.div_rn(tl.load(anchors_ptr + a * 2 + 0, mask=a_ok, other=1.0), stride)
    ah = tl.math.div_rn(tl.load(anchors_ptr + a * 2 + 1, mask=a_ok, other=1.0), stride)
    # Y2 wh-IoU (T, A) with the seed's epsilon, best anchor lowest index on ties
    inter = tl.minimum(aw[None, :], gw[:, None]) * tl.minimum(ah[None, :], gh[:, None])
    iou = tl.math.div_rn(inter, (aw * ah + 1e-16)[None, :] + (gw * gh)[:, None] - inter)
    best = _argmax(tl.where(a_ok[None, :], iou, -1.0), a, 1)
    # Y3 cell, clamped into the grid
    gi = tl.minimum(tl.floor(gx), grid - 1.0)
    gj = tl.minimum(tl.floor(gy), grid - 1.0)
    col = gi.to(tl.int32)
    row = gj.to(tl.int32)
    cell = ((b * A + best) * G + row) * G + col
    tl.atomic_max(win_ptr + cell, t, mask=t_ok)  # Y5: the last row wins
    # Y4: noobj cleared at the best anchor and wherever wh-IoU > ignore_thres
    clear = ((a[None, :] == best[:, None]) | (iou > ignore_thres)) & a_ok[None, :] & t_ok[:, None]
    cells = ((b[:, None] * A + a[None, :]) * G + row[:, None]) * G + col[:, None]
    tl.store(noobj_ptr + cells, tl.full(cells.shape, 0, tl.int8), mask=clear)
    tl.store(tcls_ptr + cell * C + label, tl.full(cell.shape, 1.0, tl.float32), mask=t_ok)  # Y5 union
    # Y3, Y6 targets of this row, used where it wins
    best_aw = tl.math.div_rn(tl.load(anchors_ptr + best * 2 + 0, mask=t_ok, other=1.0), stride)
    best_ah = tl.math.div_rn(tl.load(anchors_ptr + best * 2 + 1, mask=t_ok, other=1.0), stride)
    out = rows_ptr + t * 8
    tl.store(out + 0, gx - gi, mask=t_ok)
    tl.store(out + 1, gy - gj, mask=t_ok)
    tl.store(out + 2, _log(tl.math.div_rn(gw, best_aw) + 1e-16), mask=t_ok)
    tl.store(out + 3, _log(tl.math.div_rn(gh, best_ah) + 1e-16), mask=t_ok)
    tl.store(out + 4, gx, mask=t_ok)
    tl.store(out + 5, gy, mask=t_ok)
    tl.store(out + 6, gw, mask=t_ok)
    tl.store(out + 7, gh, mask=t_ok)


@kernel
def _count_kernel(win_ptr, noobj_ptr, counts_ptr, N, BLOCK: tl.constexpr):
    """counts (2,) int32 = (obj cells, noobj cells) of the layer's N = B*A*G*G cells."""
    n_obj = 0
    n_noobj = 0
    for start in range(0, N, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        ok = offs < N
        n_obj += _sum((tl.load(win_ptr + offs, mask=ok, other=-1) >= 0).to(tl.int32), 0)
        n_noobj += _sum((tl.load(noobj_ptr + offs, mask=ok, other=0) != 0).to(tl.int32), 0)
    tl.store(counts_ptr + 0, n_obj)
    tl.store(counts_ptr + 1, n_noobj)


@helper
def _iou_plus_one(ax, ay, aw, ah, bx, by, bw, bh):
    """The seed's IoU of centre-size boxes with the +1 pixel convention (Y12)."""
    ax1 = ax - aw * 0.5
    ax2 = ax + aw * 0.5
    ay1 = ay - ah * 0.5
    ay2 = ay + ah * 0.5
    bx1 = bx - bw * 0.5
    bx2 = bx + bw * 0.5
    by1 = by - bh * 0.5
    by2 = by + bh * 0.5
    iw = tl.maximum(tl.minimum(ax2, bx2) - tl.maximum(ax1, bx1) + 1.0, 0.0)
    ih = tl.maximum(tl.minimum(ay2, by2) - tl.maximum(ay1, by1) + 1.0, 0.0)
    inter = iw * ih
    area_a = (ax2 - ax1 + 1.0) * (ay2 - ay1 + 1.0)
    area_b = (bx2 - bx1 + 1.0) * (by2 - by1 + 1.0)
    return tl.math.div_rn(inter, area_a + area_b - inter + 1e-16)


@kernel
def _dense_kernel(
    x_ptr,
    anchors_ptr,
    targets_ptr,
    win_ptr,
    noobj_ptr,
    tcls_ptr,
    rows_ptr,
    counts_ptr,
    output_ptr,
    obj_ptr,
    maps_ptr,
    grad_ptr,
    partial_ptr,
    N,
    A,
    G,
    C,
    img_dim,
    obj_scale,
    noobj_scale,
    log_clamp,
    BLOCK_G: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """BLOCK_G cells of the layer's N = B*A*G*G, flat index ((b*A + a)*G + row)*G + col.

    Writes output (B, A*G*G, 5+C) (Y1), obj (N,) int8, maps (7, N) = tx, ty, tw, th, tconf,
    class_mask, iou_scores (0 outside obj cells), grad shaped like x (Y9), and row pid of partial
    (programs, 8): masked sums of (σ(t0) - tx)², (σ(t1) - ty)², (t2 - tw)², (t3 - th)²,
    bce(conf, 1) over obj cells, bce(conf, 0) over noobj cells, bce(cls, tcls) over obj cells ×
    classes.
    """
    pid = tl.program_id(0)
    flat = pid * BLOCK_G + tl.arange(0, BLOCK_G)
    ok = flat < N
    per_map = G * G
    image_anchor = flat // per_map  # b*A + a
    cell = flat % per_map
    col = cell % G
    row = cell // G
    grid = G * 1.0
    stride = tl.math.div_rn(img_dim, grid)
    a = image_anchor % A
    aw = tl.math.div_rn(tl.load(anchors_ptr + a * 2 + 0, mask=ok, other=1.0), stride)
    ah = tl.math.div_rn(tl.load(anchors_ptr + a * 2 + 1, mask=ok, other=1.0), stride)
    n_obj = tl.maximum(tl.load(counts_ptr + 0), 1).to(tl.float32)  # the sums are empty when 0
    n_noobj = tl.maximum(tl.load(counts_ptr + 1), 1).to(tl.float32)
    w_obj = tl.math.div_rn(obj_scale * 1.0, n_obj)
    w_noobj = tl.math.div_rn(noobj_scale * 1.0, n_noobj)
    cls = tl.arange(0, BLOCK_C)
    c_ok = cls < C
    tile_ok = c_ok[:, None] & ok[None, :]
    at = image_anchor * (C + 5) * per_map + cell  # channel 0 of each cell in x and grad
    class_at = at[None, :] + (5 + cls[:, None]) * per_map  # (BLOCK_C, BLOCK_G)
    t0 = tl.load(x_ptr + at + 0 * per_map, mask=ok, other=0.0)
    t1 = tl.load(x_ptr + at + 1 * per_map, mask=ok, other=0.0)
    t2 = tl.load(x_ptr + at + 2 * per_map, mask=ok, other=0.0)
    t3 = tl.load(x_ptr + at + 3 * per_map, mask=ok, other=0.0)
    t4 = tl.load(x_ptr + at + 4 * per_map, mask=ok, other=0.0)
    z = tl.load(x_ptr + class_at, mask=tile_ok, other=0.0)
    px = _sigmoid(t0)
    py = _sigmoid(t1)
    conf = _sigmoid(t4)
    p_cls = _sigmoid(z)
    # Y1 output: box in pixels, conf, class probabilities; (anchor, row, col) order
    bx = px + col.to(tl.float32)
    by = py + row.to(tl.float32)
    bw = _exp(t2) * aw
    bh = _exp(t3) * ah
    out = output_ptr + flat * (5 + C)
    tl.store(out + 0, bx * stride, mask=ok)
    tl.store(out + 1, by * stride, mask=ok)
    tl.store(out + 2, bw * stride, mask=ok)
    tl.store(out + 3, bh * stride, mask=ok)
    tl.store(out + 4, conf, mask=ok)
    tl.store(out[None, :] + 5 + cls[:, None], p_cls, mask=tile_ok)
    # targets of the winning row (Y5), masks (Y4)
    win = tl.load(win_ptr + flat, mask=ok, other=-1)
    obj = win >= 0
    noobj = tl.load(noobj_ptr + flat, mask=ok, other=0) != 0
    src = rows_ptr + tl.maximum(win, 0) * 8
    tx = tl.load(src + 0, mask=obj, other=0.0)
    ty = tl.load(src + 1, mask=obj, other=0.0)
    tw = tl.load(src + 2, mask=obj, other=0.0)
    th = tl.load(src + 3, mask=obj, other=0.0)
    gx = tl.load(src + 4, mask=obj, other=0.0)
    gy = tl.load(src + 5, mask=obj, other=0.0)
    gw = tl.load(src + 6, mask=obj, other=1.0)
    gh = tl.load(src + 7, mask=obj, other=1.0)
    label = tl.load(targets_ptr + tl.maximum(win, 0) * 6 + 1, mask=obj, other=-1.0).to(tl.int32)
    tcls = tl.load(tcls_ptr + flat[None, :] * C + cls[:, None], mask=tile_ok, other=0.0)
    # Y11: argmax of the class probabilities, lowest index on ties
    predicted = _argmax(tl.where(c_ok[:, None], p_cls, -1.0), cls, 0)
    class_mask = tl.where(obj & (predicted == label), 1.0, 0.0)
    iou = tl.where(obj, _iou_plus_one(bx, by, bw, bh, gx, gy, gw, gh), 0.0)  # Y12
    tl.store(obj_ptr + flat, obj.to(tl.int8), mask=ok)
    tl.store(maps_ptr + 0 * N + flat, tx, mask=ok)
    tl.store(maps_ptr + 1 * N + flat, ty, mask=ok)
    tl.store(maps_ptr + 2 * N + flat, tw, mask=ok)
    tl.store(maps_ptr + 3 * N + flat, th, mask=ok)
    tl.store(maps_ptr + 4 * N + flat, tl.where(obj, 1.0, 0.0), mask=ok)
    tl.store(maps_ptr + 5 * N + flat, class_mask, mask=ok)
    tl.store(maps_ptr + 6 * N + flat, iou, mask=ok)
    # Y7 masked sums
    dx = px - tx
    dy = py - ty
    dw = t2 - tw
    dh = t3 - th
    loss_obj, grad_obj = _bce(conf, 1.0, log_clamp)
    loss_noobj, grad_noobj = _bce(conf, 0.0, log_clamp)
    loss_cls, grad_cls = _bce(p_cls, tcls, log_clamp)
    obj_tile = obj[None, :] & c_ok[:, None]
    partial = partial_ptr + pid * 8
    tl.store(partial + 0, _sum(tl.where(obj, dx * dx, 0.0), 0))
    tl.store(partial + 1, _sum(tl.where(obj, dy * dy, 0.0), 0))
    tl.store(partial + 2, _sum(tl.where(obj, dw * dw, 0.0), 0))
    tl.store(partial + 3, _sum(tl.where(obj, dh * dh, 0.0), 0))
    tl.store(partial + 4, _sum(tl.where(obj, loss_obj, 0.0), 0))
    tl.store(partial + 5, _sum(tl.where(noobj, loss_noobj, 0.0), 0))
    tl.store(partial + 6, _sum(_sum(tl.where(obj_tile, loss_cls, 0.0), 0), 0))
    # Y9 gradient of loss_total
    g = grad_ptr + at
    tl.store(g + 0 * per_map, tl.where(obj, tl.math.div_rn(2.0 * dx * px * (1.0 - px), n_obj), 0.0), mask=ok)
    tl.store(g + 1 * per_map, tl.where(obj, tl.math.div_rn(2.0 * dy * py * (1.0 - py), n_obj), 0.0), mask=ok)
    tl.store(g + 2 * per_map, tl.where(obj, tl.math.div_rn(2.0 * dw, n_obj), 0.0), mask=ok)
    tl.store(g + 3 * per_map, tl.where(obj, tl.math.div_rn(2.0 * dh, n_obj), 0.0), mask=ok)
    g_conf = tl.where(obj, grad_obj * w_obj, 0.0) + tl.where(noobj, grad_noobj * w_noobj, 0.0)
    tl.store(g + 4 * per_map, g_conf, mask=ok)
    tl.store(grad_ptr + class_at, tl.where(obj_tile, tl.math.div_rn(grad_cls, n_obj * C), 0.0), mask=tile_ok)


@kernel
def _finalize_kernel(
    partial_ptr, counts_ptr, terms_ptr, total_ptr, R, C, obj_scale, noobj_scale, BLOCK_R: tl.constexpr
):
    """partial (R, 8) -> terms (9,) in YOLO_LOSS_KEYS order (Y7, Y8); total (1,) += loss_total."""
    sums = tl.full((8,), 0.0, tl.float32)
    for start in range(0, R, BLOCK_R):
        r = start + tl.arange(0, BLOCK_R)
        at = r[:, None] * 8 + tl.arange(0, 8)[None, :]
        sums += _sum(tl.load(partial_ptr + at, mask=at < R * 8, other=0.0), 0)
    column = tl.arange(0, 8)
    n_obj = tl.maximum(tl.load(counts_ptr + 0), 1).to(tl.float32)  # an empty sum over 1 is the spec's 0
    n_noobj = tl.maximum(tl.load(counts_ptr + 1), 1).to(tl.float32)
    count = tl.where(column == 5, n_noobj, tl.where(column == 6, n_obj * C, n_obj))
    means = tl.math.div_rn(sums, count)  # loss_x, _y, _w, _h, conf_obj, conf_noobj, cls, (0)
    tl.store(terms_ptr + tl.where(column == 6, 7, column), means, mask=column < 7)
    conf_obj = _sum(tl.where(column == 4, means, 0.0), 0)
    conf_noobj = _sum(tl.where(column == 5, means, 0.0), 0)
    loss_conf = obj_scale * conf_obj + noobj_scale * conf_noobj
    total = _sum(tl.where(column < 4, means, 0.0), 0) + loss_conf + _sum(tl.where(column == 6, means, 0.0), 0)
    tl.store(terms_ptr + 6, loss_conf)
    tl.store(terms_ptr + 8, total)
    tl.atomic_add(total_ptr, total)  # one program: a scalar atomic is one add, in launch order


def yolo_layer(
    x: torch.Tensor,
    anchors: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    img_dim: float,
    settings,
    total: torch.Tensor,
) -> dict:
    """The adapter.py keys of one layer (without the ``layer{k}.`` prefix) as tensors on x's device.

    x (B, A*(C+5), G, G), anchors (A, 2) pixels, targets (T, 6): float32, contiguous, one device
    (CPU tensors in interpreted mode); settings a YoloSettings; total (1,) float32, to which the
    layer's loss_total is added. Masks are bool, the rest float32; loss terms are 0-d.
    """
    batch, _, g, _ = x.shape
    num_anchors, num_targets, c = anchors.shape[0], targets.shape[0], num_classes
    n_cells = batch * num_anchors * g * g
    dev = x.device
    win = torch.full((n_cells,), -1, dtype=torch.int32, device=dev)
    noobj = torch.ones(n_cells, dtype=torch.int8, device=dev)
    tcls = torch.zeros((n_cells, c), dtype=torch.float32, device=dev)
    rows = torch.zeros((max(num_targets, 1), ROW_FIELDS), dtype=torch.float32, device=dev)
    counts = torch.zeros(2, dtype=torch.int32, device=dev)
    output = torch.empty((batch, num_anchors * g * g, 5 + c), dtype=torch.float32, device=dev)
    obj = torch.zeros(n_cells, dtype=torch.int8, device=dev)
    maps = torch.zeros((len(MAPS), n_cells), dtype=torch.float32, device=dev)
    grad = torch.zeros_like(x)
    terms = torch.zeros(len(YOLO_LOSS_KEYS), dtype=torch.float32, device=dev)
    s = settings
    block_c = triton.next_power_of_2(c)
    all_cells = triton.next_power_of_2(max(n_cells, 1))
    if INTERPRET:  # few programs, large blocks: the interpreter runs NumPy once per operation
        block_t = min(triton.next_power_of_2(max(num_targets, 1)), 4096)
        block_g = min(all_cells, max(16, 2**20 // block_c))  # 2**20: triton's largest block
        block_n = min(all_cells, 2**20)
    else:  # tiles that fit in registers
        block_t = 128
        block_g = min(all_cells, max(16, 4096 // block_c))
        block_n = 1024
    programs = triton.cdiv(n_cells, block_g)
    partial = torch.zeros((max(programs, 1), 8), dtype=torch.float32, device=dev)
    if num_targets > 0:
        _assign_kernel[(triton.cdiv(num_targets, block_t),)](
            targets,
            anchors,
            win,
            noobj,
            tcls,
            rows,
            num_targets,
            num_anchors,
            g,
            c,
            float(img_dim),
            float(s.ignore_thres),
            BLOCK_T=block_t,
            BLOCK_A=triton.next_power_of_2(num_anchors),
            enable_fp_fusion=False,
        )
    if programs > 0:
        _count_kernel[(1,)](win, noobj, counts, n_cells, BLOCK=block_n, enable_fp_fusion=False)
        _dense_kernel[(programs,)](
            x,
            anchors,
            targets,
            win,
            noobj,
            tcls,
            rows,
            counts,
            output,
            obj,
            maps,
            grad,
            partial,
            n_cells,
            num_anchors,
            g,
            c,
            float(img_dim),
            float(s.obj_scale),
            float(s.noobj_scale),
            float(s.log_clamp),
            BLOCK_G=block_g,
            BLOCK_C=block_c,
            enable_fp_fusion=False,
        )
    _finalize_kernel[(1,)](
        partial,
        counts,
        terms,
        total,
        programs,
        c,
        float(s.obj_scale),
        float(s.noobj_scale),
        BLOCK_R=min(triton.next_power_of_2(max(programs, 1)), 2**17 if INTERPRET else 128),
        enable_fp_fusion=False,
    )
    shape = (batch, num_anchors, g, g)
    result = {
        "output": output,
        "obj_mask": obj.view(shape).bool(),
        "noobj_mask": noobj.view(shape).bool(),
        "tcls": tcls.view(*shape, c),
        "grad": grad,
    }
    result.update({key: maps[i].view(shape) for i, key in enumerate(MAPS)})
    result.update({key: terms[i] for i, key in enumerate(YOLO_LOSS_KEYS)})
    return result
