"""Write one table as CSV, Markdown and LaTeX (each atomically) under ``<reports>/tables/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bonetumor.io import write_text


def write_table(df: pd.DataFrame, reports: Path, name: str, caption: str) -> dict[str, Path]:
    """Write ``df`` as ``<name>.csv``, ``<name>.md`` and ``<name>.tex``; the caption (which must say what
    produced the numbers) heads the Markdown and captions the LaTeX table. Returns the three paths."""
    folder = Path(reports) / "tables"
    out = {
        "csv": write_text(folder / f"{name}.csv", df.to_csv(index=False)),
        "md": write_text(folder / f"{name}.md", f"{caption}\n\n{df.to_markdown(index=False)}\n"),
        "tex": write_text(folder / f"{name}.tex", df.to_latex(index=False, caption=caption, label=f"tab:{name}",
                                                             escape=True, na_rep="--")),
    }
    return out
