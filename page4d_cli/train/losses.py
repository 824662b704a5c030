"""PAGE-4D's published training objective (VGGT's ``training/loss.py`` recipe, config ``training_final``).

    terms = compute_losses(outputs, batch, LossConfig())   # dict of scalar tensors, "objective" included

Shapes (B clips, T instants, V cameras, S = T*V images, H x W network pixels):

    outputs  pose_enc_list [B,T,V,9] x n iterations, depth [B,T,V,H,W,1], depth_conf [B,T,V,H,W],
             world_points [B,T,V,H,W,3], world_points_conf [B,T,V,H,W], mask [B,T,V,h,w] (patch grid)
    batch    pose_enc [B,T,V,9], depth [B,T,V,H,W], depth_valid [B,T,V,H,W] bool,
             world_points [B,T,V,H,W,3], point_valid [B,T,V,H,W] bool, masks [B,T,V,H,W], has_mask [B]

objective = 5 * camera + (conf + reg + grad)_depth + (conf + reg + normal)_point [+ W * mask BCE].

One knowing departure: every term is computed per clip and then averaged over the batch (VGGT pools
pixels over the whole batch). Per-clip means make a batch of B the same objective as B processes with
batch 1 under DistributedDataParallel, and as B accumulated micro-batches.

Non-finite values are NOT patched here (VGGT zeroes them silently): the loop skips and counts a step
whose terms are not all finite. Ground truth at invalid pixels is ignored (set to 0 before use).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.config import Page4DConfig
from models.dynamic_mask import pool_to_patches
from page4d_cli.train.config import LossConfig

__all__ = ["LossConfig", "compute_losses", "all_finite", "filter_by_quantile"]


# ----------------------------------------------------------------------------------- quantile filter
def filter_by_quantile(values: torch.Tensor, quantile: float, min_elements: int = 1000,
                       hard_max: float = 100.0) -> torch.Tensor:
    """VGGT's outlier filter on a 1-D tensor of per-pixel losses.

    With more than ``min_elements`` values: clamp at ``hard_max``, then keep the values strictly below
    the ``quantile`` (nearest-rank, as VGGT's ``torch_quantile``) if more than ``min_elements`` remain.
    """
    if values.numel() <= min_elements:
        return values
    values = values.clamp(max=hard_max)
    k = int(round(quantile * (values.numel() - 1))) + 1  # nearest rank, 1-based (Python's round, as VGGT)
    threshold = min(float(torch.kthvalue(values.detach().reshape(-1), k).values), hard_max)
    keep = values < threshold
    if int(keep.sum()) > min_elements:
        return values[keep]
    return values


# ----------------------------------------------------------------------------------- camera
def camera_loss(pose_enc_list: list[torch.Tensor], gt_pose_enc: torch.Tensor, image_valid: torch.Tensor,
                cfg: LossConfig) -> dict[str, torch.Tensor]:
    """One clip: pose_enc_list n x [S, 9], gt [S, 9], image_valid [S] bool -> loss_camera, loss_T/R/FoV."""
    n = len(pose_enc_list)
    total = {"T": 0.0, "R": 0.0, "FoV": 0.0}
    for i, pred in enumerate(pose_enc_list):
        weight = cfg.camera_gamma ** (n - 1 - i)
        if not bool(image_valid.any()):
            zero = (pred * 0).mean()  # keeps the graph: every rank runs the same backward
            parts = {"T": zero, "R": zero, "FoV": zero}
        else:
            diff = (pred[image_valid] - gt_pose_enc[image_valid]).abs()
            parts = {"T": diff[:, :3].clamp(max=cfg.translation_clamp).mean(),
                     "R": diff[:, 3:7].mean(), "FoV": diff[:, 7:].mean()}
        for key in total:
            total[key] = total[key] + weight * parts[key]
    avg = {key: value / n for key, value in total.items()}
    loss = avg["T"] * cfg.weight_trans + avg["R"] * cfg.weight_rot + avg["FoV"] * cfg.weight_fov
    return {"loss_camera": loss, "loss_T": avg["T"], "loss_R": avg["R"], "loss_FoV": avg["FoV"]}


# ----------------------------------------------------------------------------------- gradient terms
def gradient_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """pred/gt [S, H, W, C], valid [S, H, W]: L1 of x/y finite differences of (pred - gt) on pixel pairs
    that are both valid (each clamped at 100), summed and divided by the number of valid values."""
    mask = valid[..., None].expand_as(pred).to(pred.dtype)
    diff = (pred - gt) * mask
    grad_x = ((diff[:, :, 1:] - diff[:, :, :-1]).abs() * mask[:, :, 1:] * mask[:, :, :-1]).clamp(max=100)
    grad_y = ((diff[:, 1:] - diff[:, :-1]).abs() * mask[:, 1:] * mask[:, :-1]).clamp(max=100)
    count = mask.sum()
    if count == 0:
        return (pred * 0).sum()
    return (grad_x.sum() + grad_y.sum()) / count


def point_map_normals(points: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8):
    """points [S, H, W, 3], valid [S, H, W] -> normals [4, S, H, W, 3] (unit), valids [4, S, H, W].

    The four cross products up x left, left x down, down x right, right x up of the vectors from each
    pixel to its 4-neighbours; a normal is valid when the pixel and both neighbours are valid.
    """
    pts = F.pad(points.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    m = F.pad(valid, (1, 1, 1, 1))
    center = pts[:, 1:-1, 1:-1]
    up, down = pts[:, :-2, 1:-1] - center, pts[:, 2:, 1:-1] - center
    left, right = pts[:, 1:-1, :-2] - center, pts[:, 1:-1, 2:] - center
    normals = torch.stack((torch.cross(up, left, dim=-1), torch.cross(left, down, dim=-1),
                           torch.cross(down, right, dim=-1), torch.cross(right, up, dim=-1)))
    mc, mu, md, ml, mr = m[:, 1:-1, 1:-1], m[:, :-2, 1:-1], m[:, 2:, 1:-1], m[:, 1:-1, :-2], m[:, 1:-1, 2:]
    valids = torch.stack((mu & mc & ml, ml & mc & md, md & mc & mr, mr & mc & mu))
    return F.normalize(normals, p=2, dim=-1, eps=eps), valids


def normal_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, cos_eps: float = 1e-8) -> torch.Tensor:
    """pred/gt [S, H, W, 3]: mean of 1 - cos(angle) between predicted and GT normals (0 if < 10 valid)."""
    pred_n, pred_ok = point_map_normals(pred, valid, cos_eps)
    gt_n, gt_ok = point_map_normals(gt, valid, cos_eps)
    both = pred_ok & gt_ok
    if int(both.sum()) < 10:
        return (pred * 0).sum()
    dot = (pred_n[both] * gt_n[both]).sum(-1).clamp(-1 + cos_eps, 1 - cos_eps)
    return (1 - dot).mean()


def multi_scale(fn, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, scales: int) -> torch.Tensor:
    """Mean of ``fn`` over ``scales`` subsamplings with stride 2**s (s = 0 .. scales-1)."""
    total = 0.0
    for s in range(scales):
        step = 2 ** s
        total = total + fn(pred[:, ::step, ::step], gt[:, ::step, ::step], valid[:, ::step, ::step])
    return total / scales


# ----------------------------------------------------------------------------------- depth / points
def regression_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, conf: torch.Tensor,
                    gamma: float, alpha: float, valid_range: float, grad_fn, scales: int):
    """One clip: pred/gt [S, H, W, C], valid [S, H, W] bool, conf [S, H, W] -> (conf, reg, grad) losses.

    r = ||gt - pred||_2 per valid pixel; conf = gamma * r * c - alpha * log(c) with c clamped >= 1e-6;
    both filtered by the quantile rule, then averaged. ``grad_fn`` is ``gradient_loss`` or ``normal_loss``.
    """
    gt = torch.where(valid[..., None], gt, torch.zeros((), dtype=gt.dtype, device=gt.device))
    residual = torch.linalg.vector_norm(gt[valid] - pred[valid], dim=-1)
    c = conf[valid].clamp(min=1e-6)
    loss_conf = gamma * residual * c - alpha * torch.log(c)
    if valid_range > 0:
        loss_conf = filter_by_quantile(loss_conf, valid_range)
        residual = filter_by_quantile(residual, valid_range)
    loss_grad = multi_scale(grad_fn, pred, gt, valid, scales)
    return loss_conf.mean(), residual.mean(), loss_grad


def geometry_loss(name: str, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, conf: torch.Tensor,
                  gamma: float, alpha: float, valid_range: float, grad_fn, scales: int) -> dict[str, torch.Tensor]:
    """One clip's depth or point loss; fewer than 100 valid pixels in the clip gives zeros (as VGGT)."""
    if int(valid.sum()) < 100:
        zero = (pred * 0).mean() + (conf * 0).mean()
        return {f"loss_conf_{name}": zero, f"loss_reg_{name}": zero, f"loss_grad_{name}": zero}
    loss_conf, loss_reg, loss_grad = regression_loss(pred, gt, valid, conf, gamma, alpha, valid_range, grad_fn, scales)
    return {f"loss_conf_{name}": loss_conf, f"loss_reg_{name}": loss_reg, f"loss_grad_{name}": loss_grad}


# ----------------------------------------------------------------------------------- mask
def mask_loss(fused_mask: torch.Tensor, gt_masks: torch.Tensor, patch_size: int) -> torch.Tensor:
    """One clip: fused M [S, h, w] in (0, 1), GT masks [S, H, W] in [0, 1] -> BCE against the GT
    fraction of each patch that is dynamic (the same pooling the network applies to M_ext)."""
    target = pool_to_patches(gt_masks.float(), patch_size).reshape(fused_mask.shape)
    prob = fused_mask.float().clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(prob, target)


# ----------------------------------------------------------------------------------- total
def compute_losses(outputs: dict, batch: dict, cfg: LossConfig,
                   patch_size: int = Page4DConfig.patch_size) -> dict[str, torch.Tensor]:
    """Every term (averaged over the B clips) and ``objective``; see the module docstring for shapes.

    patch_size: the network's (``model.config.patch_size``; the mask loss pools the GT masks to it)."""
    B = batch["images"].shape[0]
    per_clip: list[dict[str, torch.Tensor]] = []
    has_mask = batch.get("has_mask")
    for b in range(B):
        terms: dict[str, torch.Tensor] = {}
        objective = 0.0
        if "pose_enc_list" in outputs:
            image_valid = batch["point_valid"][b].flatten(0, 1).flatten(1).sum(-1) > cfg.min_valid_pixels
            cam = camera_loss([p[b].flatten(0, 1).float() for p in outputs["pose_enc_list"]],
                              batch["pose_enc"][b].flatten(0, 1).float(), image_valid, cfg)
            terms.update(cam)
            objective = objective + cam["loss_camera"] * cfg.camera_weight
        if "depth" in outputs:
            depth = geometry_loss("depth", outputs["depth"][b].flatten(0, 1).float(),
                                  batch["depth"][b].flatten(0, 1)[..., None].float(),
                                  batch["depth_valid"][b].flatten(0, 1).bool(),
                                  outputs["depth_conf"][b].flatten(0, 1).float(),
                                  cfg.depth_gamma, cfg.depth_alpha, cfg.valid_range, gradient_loss,
                                  cfg.depth_grad_scales)
            terms.update(depth)
            objective = objective + sum(depth.values()) * cfg.depth_weight
        if "world_points" in outputs:
            point = geometry_loss("point", outputs["world_points"][b].flatten(0, 1).float(),
                                  batch["world_points"][b].flatten(0, 1).float(),
                                  batch["point_valid"][b].flatten(0, 1).bool(),
                                  outputs["world_points_conf"][b].flatten(0, 1).float(),
                                  cfg.point_gamma, cfg.point_alpha, cfg.valid_range, normal_loss,
                                  cfg.point_normal_scales)
            terms.update(point)
            objective = objective + sum(point.values()) * cfg.point_weight
        if cfg.mask_weight > 0 and "mask" in outputs:
            fused = outputs["mask"][b].flatten(0, 1)
            if has_mask is None or bool(has_mask.reshape(B, -1)[b].all()):
                terms["loss_mask"] = mask_loss(fused, batch["masks"][b].flatten(0, 1), patch_size)
            else:
                terms["loss_mask"] = (fused * 0).mean()
            objective = objective + terms["loss_mask"] * cfg.mask_weight
        terms["objective"] = objective
        per_clip.append(terms)
    return {key: torch.stack([t[key] for t in per_clip]).mean() for key in per_clip[0]}


def all_finite(terms: dict[str, torch.Tensor]) -> bool:
    """True when every term is a finite number (else the loop skips the step)."""
    return all(bool(torch.isfinite(v).all()) for v in terms.values())
