"""A set of (blurred, sharp) image pairs, the unit every method fits and is scored on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PairSet:
    """``blurred`` and ``sharp`` float32 tensors (N, C, H, W) in [0, 1], with each image's
    identity (person) and file name."""

    blurred: torch.Tensor
    sharp: torch.Tensor
    identities: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.blurred.shape != self.sharp.shape:
            raise ValueError(
                f"blurred {tuple(self.blurred.shape)} and sharp {tuple(self.sharp.shape)} differ"
            )
        if self.blurred.ndim != 4:
            raise ValueError(f"pairs must be (N, C, H, W); got {tuple(self.blurred.shape)}")
        n = self.blurred.shape[0]
        if not self.identities:
            self.identities = [""] * n
        if not self.names:
            self.names = [f"img{i:05d}" for i in range(n)]
        if len(self.identities) != n or len(self.names) != n:
            raise ValueError("identities and names must have one entry per image")

    def __len__(self) -> int:
        return int(self.blurred.shape[0])

    def subset(self, idx: list[int] | torch.Tensor) -> PairSet:
        idx_list = [int(i) for i in idx]
        t = torch.as_tensor(idx_list, dtype=torch.long)
        return PairSet(
            self.blurred[t],
            self.sharp[t],
            [self.identities[i] for i in idx_list],
            [self.names[i] for i in idx_list],
        )
