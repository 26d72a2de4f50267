"""The training and evaluation dataset: one HDF5 split file (mbmt.data.hdf5) as a torch Dataset.

Safe with DataLoader workers and DDP: the HDF5 file is opened lazily by the process that reads
it, never shared across a fork (HDF5 handles are not fork-safe), and the object pickles without
its handle (spawned workers). Augmentation randomness is a function of (seed, epoch, index) only,
``numpy.random.default_rng([seed, epoch, index])``, so a sample is the same whichever worker,
rank or resumed run produces it.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from mbmt.data.augment import augmentation, sample_generator
from mbmt.data.hdf5 import DECODED, MODALITIES, read_attrs


def decode_tensors(stored: dict[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """`mbmt.data.hdf5.decode` as tensors, converted by torch: its float16 -> float32 conversion is
    several times faster than numpy's, which made decoding the slowest step of loading a sample.
    Storage arrays or tensors (on any device; the result stays there) of one sample or a batch."""
    decoded = {}
    for name, (dtype, divisor) in DECODED.items():
        tensor = torch.as_tensor(stored[name]).to(getattr(torch, dtype))
        decoded[name] = tensor.div_(divisor) if divisor else tensor
    return decoded


class NYUv2Dataset(Dataset):
    """The samples of one split file as channel-first tensors.

    ``dataset[i]`` is ``{"image": float32 (3,H,W) in [0,1], "semantic": int64 (H,W) (-1 = ignore),
    "depth": float32 (1,H,W) metres (0 = missing), "normal": float32 (3,H,W) (all-zero = missing),
    "index": i}``. With ``augment`` as params train.augment (true / ``"mtan-like"``: the project's
    resampling; ``"mtan"``: MTAN's exact one) MTAN's training augmentation is applied
    (`mbmt.data.augment.augmentation`), seeded by (``seed``, epoch, i).

    Call `set_epoch` before iterating a DataLoader for that epoch. The epoch lives in shared
    memory, so workers see it even when they persist across epochs (``persistent_workers=True``).
    """

    def __init__(self, path: str | Path, *, augment: bool | str = False, seed: int = 0):
        self.path = Path(path)
        self.attrs = read_attrs(self.path)
        self.augment = augment
        self.seed = seed
        self.transform = augmentation(augment)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._file: h5py.File | None = None
        self._owner_pid: int | None = None
        self._handles: dict[str, h5py.Dataset] | None = None

    def __len__(self) -> int:
        return int(self.attrs["count"])

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def _datasets(self) -> dict[str, h5py.Dataset]:
        """This process's open handle, (re)opened after a fork (an inherited handle is never used)."""
        if self._file is None or self._owner_pid != os.getpid():
            # Whole-sample chunks are read once per epoch in random order: a chunk cache only adds a copy.
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
            self._owner_pid = os.getpid()
            self._handles = {name: self._file[name] for name in MODALITIES}
        return self._handles

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_file=None, _owner_pid=None, _handles=None)
        return state

    def __getitem__(self, index: int) -> dict:
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {self.path} ({count} samples)")
        index = int(index) % count
        stored = {name: handle[index] for name, handle in self._datasets().items()}
        sample = decode_tensors(stored)
        if self.transform is not None:
            sample = self.transform(sample, sample_generator(self.seed, self.epoch, index))
        sample["index"] = index
        return sample
