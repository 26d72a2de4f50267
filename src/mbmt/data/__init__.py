"""Data: fetch, preprocess, the synthetic generator, the HDF5 layout and the training dataset."""
