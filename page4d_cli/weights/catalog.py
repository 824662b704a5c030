"""The pretrained files page4d knows how to fetch, and the terms they come with.

Facts from docs/design.md ("Weights on this machine"). Sizes here are
only estimates for messages; the real size always comes from the hub's metadata at fetch time.

Licence policy (decided here, enforced in :mod:`page4d_cli.weights.fetch`):

- A file whose publisher states a licence with restrictions (Pi3: CC BY-NC 4.0; VGGT-1B: VGGT
  licence, non-commercial) needs explicit acceptance: ``--accept-licence`` / ``-y`` or an
  interactive "yes". Its terms are printed before anything is downloaded.
- A file with no stated licence (PAGE-4D) gets a printed notice but no prompt: there are no terms
  to accept, and the notice says that no rights are granted beyond what the authors allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from models.loading import roles as _roles

#: The roles a weights file can play: the two pretrained stages (docs/design.md, "Three-stage loading")
#: and a fine-tuned run overlaid as stage 4 (``models.loading.finetuned``; registered, never fetched).
#: One table for the loader, ``weights add`` and the registry: ``models.loading.roles``.
ROLES = tuple(_roles.ROLES)

GB = 1_000_000_000


def format_size(n: float) -> str:
    """Bytes as a short decimal size: ``3.80 GB``, ``500.0 MB``, ``12.0 kB``."""
    for unit, scale in (("GB", GB), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} GB" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class HubFile:
    """One file on the Hugging Face hub that page4d can download and register.

    ``key`` names it on the command line; ``role`` says which part of the network it feeds;
    ``layout`` is the checkpoint layout it is expected to have; ``approx_size`` (bytes) is only
    used when the hub does not report a size.
    """

    key: str
    role: str
    repo_id: str
    repo_type: str  # "model" or "dataset" (huggingface_hub's repo_type)
    filename: str
    layout: str
    approx_size: int
    licence: str | None  # short name, None when the publisher states no licence
    licence_text: str  # what is printed before downloading
    needs_acceptance: bool

    @property
    def label(self) -> str:
        """Human-readable ``repo/file`` with the repo kind, for messages."""
        kind = "dataset " if self.repo_type == "dataset" else ""
        return f"{kind}{self.repo_id}/{self.filename}"


PI3 = HubFile(
    key="pi3",
    role="pi3",
    repo_id="yyfz233/Pi3",
    repo_type="model",
    filename="model.safetensors",
    layout="pi3",
    approx_size=int(3.8 * GB),
    licence="CC BY-NC 4.0 (weights)",
    licence_text=(
        "The Pi3 weights (Hugging Face yyfz233/Pi3, model.safetensors) are licensed under "
        "CC BY-NC 4.0: NON-COMMERCIAL use only, with attribution to the Pi3 authors. "
        "Terms: https://creativecommons.org/licenses/by-nc/4.0/"
    ),
    needs_acceptance=True,
)

_PAGE4D_NOTICE = (
    "No licence is stated for the PAGE-4D weights (Hugging Face dataset zhouk777/PAGE4D). "
    "Without a licence no rights are granted beyond what the authors allow: check with them "
    "before any use other than personal research."
)

PAGE4D_MASK = HubFile(
    key="page4d-mask",
    role="page4d",
    repo_id="zhouk777/PAGE4D",
    repo_type="dataset",
    filename="checkpoint_mask.pt",
    layout="page4d",
    approx_size=5 * GB,
    licence=None,
    licence_text=_PAGE4D_NOTICE,
    needs_acceptance=False,
)

PAGE4D_NOMASK = replace(PAGE4D_MASK, key="page4d-nomask", filename="checkpoint_nomask.pt")

VGGT_1B = HubFile(
    key="vggt",
    role="page4d",
    repo_id="facebook/VGGT-1B",
    repo_type="model",
    filename="model.pt",
    layout="vggt",
    approx_size=5 * GB,
    licence="VGGT licence (non-commercial)",
    licence_text=(
        "The VGGT-1B weights (Hugging Face facebook/VGGT-1B, model.pt) are under the VGGT licence: "
        "NON-COMMERCIAL use only. Terms: https://huggingface.co/facebook/VGGT-1B"
    ),
    needs_acceptance=True,
)

CATALOG: dict[str, HubFile] = {f.key: f for f in (PI3, PAGE4D_MASK, PAGE4D_NOMASK, VGGT_1B)}

#: What ``page4d weights fetch WHICH`` accepts. ``vggt`` is an alternative to the PAGE-4D file
#: (same layout without the mask head) and is never part of ``all``.
TARGETS = ("pi3", "page4d", "all", "vggt")
VARIANTS = ("mask", "nomask")


def select(which: str = "all", variant: str = "mask") -> list[HubFile]:
    """The catalog files that ``fetch WHICH --variant VARIANT`` downloads, in download order."""
    if which not in TARGETS:
        raise ValueError(f"unknown weights {which!r}: choose one of {', '.join(TARGETS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown PAGE-4D variant {variant!r}: choose mask or nomask")
    page4d = CATALOG[f"page4d-{variant}"]
    return {
        "pi3": [PI3],
        "page4d": [page4d],
        "all": [PI3, page4d],
        "vggt": [VGGT_1B],
    }[which]
