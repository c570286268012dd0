"""dlcli: train deep-learning models from TOML specs on a NumPy tensor core."""

__version__ = "0.1.0"
