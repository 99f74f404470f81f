"""Ground-truth helpers shared by the built-in scenes' tests."""

import numpy as np


def back_project(camera):
    """World points [M, 3] of the pixel centres whose ray hits (depth > 0), and that mask [H, W]."""
    hit = camera.depth[..., 0] > 0
    rows, cols = np.nonzero(hit)
    depth = camera.depth[rows, cols, 0].astype(np.float64)
    K = camera.K.astype(np.float64)
    cam = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0] * depth, (rows + 0.5 - K[1, 2]) / K[1, 1] * depth, depth], 1)
    R, t = camera.viewmat[:3, :3].astype(np.float64), camera.viewmat[:3, 3].astype(np.float64)
    return (cam - t) @ R, hit
