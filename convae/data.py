"""Training and validation pairs in the forms `convae.train` accepts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset


def _check_images(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [0, 1], got dtype {t.dtype}")
    if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"{what} values must lie in [0, 1] (found min {t.min().item():.4g}, "
            f"max {t.max().item():.4g}); scale images to [0, 1] first"
        )


class PairData:
    """Uniform view of training/validation pairs: tensors, a PairSet-like object, or a
    Dataset yielding ``(blurred, sharp)`` (C, H, W) tensors."""

    def __init__(self, data: Any, what: str) -> None:
        self.what = what
        self.dataset: Dataset | None = None
        if hasattr(data, "blurred") and hasattr(data, "sharp"):  # e.g. benchmarks PairSet
            data = (data.blurred, data.sharp)
        if (
            isinstance(data, (tuple, list))
            and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)
        ):
            b, s = data
            if b.ndim != 4 or b.shape != s.shape:
                raise ValueError(
                    f"{what}: blurred {tuple(b.shape)} and sharp {tuple(s.shape)} "
                    f"must be equal (N, C, H, W) shapes"
                )
            if b.shape[0] == 0:
                raise ValueError(f"{what} holds no images")
            _check_images(b, f"{what} blurred")
            _check_images(s, f"{what} sharp")
            self.blurred = b.float().contiguous()
            self.sharp = s.float().contiguous()
            self.n = int(b.shape[0])
            self.channels = int(b.shape[1])
        elif isinstance(data, Dataset):
            self.dataset = data
            try:
                self.n = len(data)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError(f"{what}: the Dataset must define __len__") from None
            if self.n == 0:
                raise ValueError(f"{what} holds no images")
            first = data[0]
            if not (
                isinstance(first, (tuple, list))
                and len(first) == 2
                and first[0].ndim == 3
                and first[0].shape == first[1].shape
            ):
                raise ValueError(
                    f"{what}: the Dataset must yield (blurred, sharp) pairs of "
                    f"equal (C, H, W) tensors"
                )
            self.channels = int(first[0].shape[0])
        else:
            raise TypeError(
                f"{what} must be a (blurred, sharp) pair of (N, C, H, W) tensors, "
                f"an object with .blurred/.sharp, or a torch Dataset of pairs; "
                f"got {type(data).__name__}"
            )

    def keep_on(self, device: torch.device, *, max_fraction: float = 0.5) -> bool:
        """Move tensor pairs onto a CUDA ``device`` once, so batches are gathered there (no
        host copy per step), when they take at most ``max_fraction`` of its free memory.
        Returns whether they are there; a Dataset or a CPU device leaves things as they are."""
        if self.dataset is not None or device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        if 2 * self.blurred.numel() * self.blurred.element_size() > max_fraction * free:
            return False
        self.blurred, self.sharp = self.blurred.to(device), self.sharp.to(device)
        return True

    def batches(
        self, index_batches: Sequence[torch.Tensor], device: torch.device, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = device.type == "cuda"
        if self.dataset is None:
            for idx in index_batches:
                idx = idx.to(self.blurred.device)
                yield (
                    self.blurred[idx].to(device, non_blocking=non_blocking),
                    self.sharp[idx].to(device, non_blocking=non_blocking),
                )
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=[i.tolist() for i in index_batches],
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
        )
        for b, s in loader:
            if b.shape != s.shape or b.ndim != 4:
                raise ValueError(
                    f"{self.what}: mismatched pair shapes {tuple(b.shape)} and {tuple(s.shape)}"
                )
            _check_images(b, f"{self.what} blurred")
            _check_images(s, f"{self.what} sharp")
            yield (
                b.float().to(device, non_blocking=non_blocking),
                s.float().to(device, non_blocking=non_blocking),
            )
