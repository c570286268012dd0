"""Numba kernels: pure functions over arrays, compiled on first call and cached on disk.

Nothing here is imported by `dlcli --help` or `dlcli validate`; import the family module you need.
"""
