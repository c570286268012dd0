"""`dlcli tune` on Optuna: the search space (space.py), the study and its storage (study.py), who runs which
trial (claims.py), one trial (trial.py), the search loop (search.py), parallel workers (parallel.py),
best.toml (best.py), what observers hear (events.py) and the report of a study (results.py).

Optuna and tomli-w are the optional extra dlcli[tune]: every import of them is inside a function.
"""
