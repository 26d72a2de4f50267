"""A whole split held on the training device: batches gathered, decoded and augmented there.

At the paper's batch of 2 a GPU step is short, and reading, decoding and augmenting a batch in
DataLoader workers on the CPU costs about as much. A split is small next to a GPU's memory
(NYUv2's 795 training images at 288x384 take 1.05 GB in their stored types: uint8 image, int8
labels, float16 depth and normals), so it is loaded once and every batch is a gather on the
device, with no worker processes and no host-to-device copy of pixels.

Same batches as the DataLoader over `mbmt.data.dataset.NYUv2Dataset`: `batches` yields, for the
same sampler, the batches that DataLoader would collate, with the same decoding and the same
augmentation (`mbmt.data.augment`, its random draws made on the host from the same generator,
seeded by (seed, epoch, index)). On the CPU they are equal bit for bit (tests/test_device_split.py).
On a GPU the crops, flips, labels, depths and normals are the same (index gathers and an exact
division); the image's bilinear resampling (and with train.augment ``mtan`` the normals') runs
on the GPU's arithmetic, which may round the last bit of a pixel differently from the CPU's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import torch

from mbmt.data.augment import augmentation, sample_generator
from mbmt.data.dataset import decode_tensors
from mbmt.data.hdf5 import MODALITIES, read_attrs


class DeviceSplit:
    """The samples of split file ``path`` on ``device``, in their stored types.

    ``batch(indices, epoch)`` is the collated batch of those samples (``index`` as an int64 CPU
    tensor, as a DataLoader gives it); with ``augment`` as params train.augment (true,
    ``"mtan-like"`` or ``"mtan"``) MTAN's training augmentation is applied to each sample, seeded
    by (``seed``, epoch, index).
    """

    def __init__(self, path: str | Path, device: torch.device, *, augment: bool | str = False, seed: int = 0):
        self.path = Path(path)
        self.attrs = read_attrs(self.path)
        self.device = torch.device(device)
        self.seed = seed
        self.transform = augmentation(augment)
        with h5py.File(self.path, "r") as file:
            self.stored = {name: torch.from_numpy(file[name][()]).to(self.device) for name in MODALITIES}

    def __len__(self) -> int:
        return int(self.attrs["count"])

    def batch(self, indices: Sequence[int], epoch: int = 0) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        rows = index.to(self.device, non_blocking=True)
        batch = decode_tensors({name: stored.index_select(0, rows) for name, stored in self.stored.items()})
        if self.transform is not None:
            samples = [self.transform({name: value[i] for name, value in batch.items()},
                                      sample_generator(self.seed, epoch, int(sample)))
                       for i, sample in enumerate(index)]
            batch = {name: torch.stack([sample[name] for sample in samples]) for name in batch}
        batch["index"] = index
        return batch

    def batches(self, sampler: Iterable[int], batch_size: int, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of ``sampler``'s indices in order, the last one possibly smaller (a DataLoader's
        ``drop_last=False``)."""
        indices = list(sampler)
        for start in range(0, len(indices), batch_size):
            yield self.batch(indices[start:start + batch_size], epoch)
