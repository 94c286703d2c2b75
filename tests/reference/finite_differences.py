"""Central finite differences, the yardstick of the reference's analytic gradients."""

import numpy as np


def central_difference(f, x, h=1e-6):
    """d f / d x of a scalar function f of the float64 array x, by (f(x + h) − f(x − h)) / 2h
    per element; x is modified in place and restored."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f(x)
        flat[i] = keep - h
        down = f(x)
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad
