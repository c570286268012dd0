"""A small table in the Jena climate format (a "Date Time" column, then 14 measurements every 10 minutes) whose
temperature follows a known periodic signal, for the time-series tests and the Jena spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLUMNS = ("p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)",
           "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)", "wd (deg)")
PERIOD = 100  # rows: not a divisor of 24 hours (144 rows), so the value a day earlier is a poor forecast


def jena_like_table(rows: int, seed: int = 0) -> np.ndarray:
    """(rows, 14) measurements: the temperature a sine of PERIOD rows plus noise, the others functions of it."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    temperature = 10.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(scale=0.3, size=rows)
    noise = rng.normal(scale=0.5, size=(rows, 14))
    table = np.stack([990.0 + 0.5 * temperature, temperature, temperature + 273.15, temperature - 5.0,
                      70.0 - temperature, 12.0 + temperature, 8.0 + 0.3 * temperature, 4.0 + 0.7 * temperature,
                      5.0 + 0.2 * temperature, 8.0 + 0.3 * temperature, 1250.0 - 4.0 * temperature,
                      2.0 + 0.1 * temperature, 3.0 + 0.1 * temperature, 180.0 + 5.0 * temperature], axis=1)
    table[:, [0, 4, 11, 12, 13]] += noise[:, [0, 4, 11, 12, 13]]
    return table


def write_jena_like(path: Path, rows: int, seed: int = 0) -> np.ndarray:
    """Write the table as the Jena CSV is written ("01.01.2009 00:10:00" times, 2 decimals); returns it as
    written (rounded)."""
    table = np.round(jena_like_table(rows, seed), 2)
    minutes = 10 * (np.arange(rows) + 1)
    days, rest = np.divmod(minutes, 24 * 60)
    stamps = [f"{1 + d % 28:02d}.{1 + d // 28 % 12:02d}.2009 {r // 60:02d}:{r % 60:02d}:00" for d, r in zip(days, rest)]
    lines = ['"Date Time",' + ",".join(f'"{name}"' for name in COLUMNS)]
    lines += [stamp + "," + ",".join(f"{value:.2f}" for value in row) for stamp, row in zip(stamps, table)]
    path.write_text("\n".join(lines) + "\n")
    return table
