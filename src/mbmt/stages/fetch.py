"""Get the raw dataset into data/raw/ (MTAN's NYUv2 layout) and record its provenance in data/raw/SOURCE.json.

params data.source = nyuv2: download MTAN's NYUv2 from the first of data.nyuv2.sources that
works, tried in order: an archive URL, a {train: URL, val: URL} pair joined into one tree, or a
Hugging Face Hub dataset repository in Parquet converted into MTAN's layout, every array checked
(progress bar; an interrupted download resumes from data/downloads/; an archive whose URL has an
entry in data.nyuv2.sha256 is verified, otherwise its hash is printed for you to pin; when every
source fails, one error lists each with its reason). Or take data.nyuv2.local_path, an archive
(.zip/.tar/.tar.gz) or extracted folder you already have.
params data.source = synthetic: render the built-in synthetic scenes into the same layout.
data/raw/ is replaced only when complete.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """All settings come from params (data.*); the stage takes no options of its own."""


def main(args: argparse.Namespace) -> int:
    from mbmt.config import load_params
    from mbmt.data.fetch import fetch
    from mbmt.data.settings import DataSettings
    from mbmt.paths import RAW_DIR

    record = fetch(DataSettings.from_section(load_params(args.params)["data"]))
    counts = ", ".join(f"{split} {n}" for split, n in record["counts"].items())
    print(f"{RAW_DIR}: {record['source']} ({record['origin']}), samples: {counts}")
    return 0
