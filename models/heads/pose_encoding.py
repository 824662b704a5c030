"""The absT_quaR_FoV camera encoding and its conversion to extrinsics / intrinsics.

encoding [..., 9] = [tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w], quaternion scalar-last.
extrinsic = [R(q) | t], camera-from-world, OpenCV axes (x right, y down, z forward).
intrinsic: fy = (H/2) / tan(fov_h/2), fx = (W/2) / tan(fov_w/2), principal point (W/2, H/2), in the
pixels of the network input (H, W).
"""

from __future__ import annotations

import torch


def quaternion_to_matrix(quat: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x, y, z, w), any norm -> rotation matrices [..., 3, 3]."""
    x, y, z, w = quat.unbind(-1)
    two_s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quat.shape[:-1] + (3, 3))


def matrix_to_quaternion(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (x, y, z, w), w >= 0."""
    m = rot.reshape(-1, 3, 3)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = torch.stack((
        torch.stack((m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1], 1 + trace), -1),
        torch.stack((1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0],
                     m[:, 2, 1] - m[:, 1, 2]), -1),
        torch.stack((m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1],
                     m[:, 0, 2] - m[:, 2, 0]), -1),
        torch.stack((m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
                     m[:, 1, 0] - m[:, 0, 1]), -1),
    ), dim=1)  # [n, 4 candidates, 4]: each is 2*sqrt(dominant)*q up to scale
    # Pick, per matrix, the numerically best candidate (largest norm).
    best = candidates.norm(dim=-1).argmax(dim=1)
    quat = candidates[torch.arange(m.shape[0]), best]
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[:, 3:4] < 0, -quat, quat)
    return quat.reshape(rot.shape[:-2] + (4,))


def encoding_to_extrinsic_intrinsic(encoding: torch.Tensor, image_hw: tuple[int, int]):
    """encoding [..., 9] -> (extrinsic [..., 3, 4], intrinsic [..., 3, 3]) in network pixels."""
    height, width = image_hw
    translation = encoding[..., :3]
    rotation = quaternion_to_matrix(encoding[..., 3:7])
    extrinsic = torch.cat((rotation, translation[..., None]), dim=-1)
    fy = (height / 2.0) / torch.tan(encoding[..., 7] / 2.0)
    fx = (width / 2.0) / torch.tan(encoding[..., 8] / 2.0)
    intrinsic = torch.zeros(encoding.shape[:-1] + (3, 3), dtype=encoding.dtype, device=encoding.device)
    intrinsic[..., 0, 0] = fx
    intrinsic[..., 1, 1] = fy
    intrinsic[..., 0, 2] = width / 2.0
    intrinsic[..., 1, 2] = height / 2.0
    intrinsic[..., 2, 2] = 1.0
    return extrinsic, intrinsic


def extrinsic_intrinsic_to_encoding(extrinsic: torch.Tensor, intrinsic: torch.Tensor,
                                    image_hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``encoding_to_extrinsic_intrinsic`` (principal point assumed centred)."""
    height, width = image_hw
    quat = matrix_to_quaternion(extrinsic[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2.0) / intrinsic[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2.0) / intrinsic[..., 0, 0])
    return torch.cat((extrinsic[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]), dim=-1)
