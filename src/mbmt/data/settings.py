"""Params ``data`` as the data code takes it: typed, immutable settings.

The stages unpack the section once, at their boundary (``DataSettings.from_section``), and the
functions of mbmt.data take these objects or named values, never the params dict. What each key
means is the schema's (src/mbmt/schemas/params.schema.yaml), which has validated the section by
then. Entries of ``nyuv2.sources`` stay as written (a URL, a ``{train, val}`` pair, a Hub
repository ``{hub, revision, shards, shape}``), frozen: read-only mappings and tuples, so that
``thaw`` gives back exactly what the provenance records quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

# One home for making params read-only and back (the training and evaluation settings use them too).
from mbmt.config import freeze, thaw

# One entry of data.nyuv2.sources: an archive URL, or a read-only mapping (split pair or Hub repository).
Source = Union[str, Mapping[str, Any]]


@dataclass(frozen=True)
class SyntheticScenes:
    """params data.synthetic: which built-in scenes stand in for NYUv2."""

    seed: int
    train_size: int
    test_size: int

    def size(self, split: str) -> int:
        """The number of scenes of mbmt split ``split`` ("train" or "test")."""
        return {"train": self.train_size, "test": self.test_size}[split]


@dataclass(frozen=True)
class NyuSources:
    """params data.nyuv2: where MTAN's NYUv2 comes from."""

    sources: tuple[Source, ...]  # tried in order
    sha256: Mapping[str, str]  # a source URL, or local_path as written -> its archive's pinned sha256
    local_path: str | None  # an archive or extracted folder the user has (then no source is tried)


@dataclass(frozen=True)
class DataSettings:
    """params data: the dataset, its resolution, its sources."""

    source: str  # "nyuv2" or "synthetic"
    height: int
    width: int
    nyuv2: NyuSources
    synthetic: SyntheticScenes
    real_images: str | None  # a folder of NYU frames imported as split "real"

    @classmethod
    def from_section(cls, data: Mapping) -> DataSettings:
        """The settings of a validated params ``data`` section."""
        nyuv2, synthetic = data["nyuv2"], data["synthetic"]
        return cls(
            source=data["source"], height=data["height"], width=data["width"],
            nyuv2=NyuSources(sources=freeze(nyuv2["sources"]), sha256=freeze(nyuv2["sha256"]),
                             local_path=nyuv2["local_path"]),
            synthetic=SyntheticScenes(seed=synthetic["seed"], train_size=synthetic["train_size"],
                                      test_size=synthetic["test_size"]),
            real_images=data["real_images"],
        )

    def as_section(self) -> dict:
        """The params ``data`` section these settings came from, as plain JSON values in the schema's
        key order (data/processed/manifest.json records it)."""
        return {
            "source": self.source, "height": self.height, "width": self.width,
            "nyuv2": {"sources": thaw(self.nyuv2.sources), "sha256": thaw(self.nyuv2.sha256),
                      "local_path": self.nyuv2.local_path},
            "synthetic": {"seed": self.synthetic.seed, "train_size": self.synthetic.train_size,
                          "test_size": self.synthetic.test_size},
            "real_images": self.real_images,
        }
