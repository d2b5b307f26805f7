"""Reading and writing tables as files: CSV always, Parquet with ``pyarrow``.

Owns the file formats of private inputs and synthetic outputs, shared by ``assay synth``
(:mod:`assay.service.cli_synth`) and the REST release service (:mod:`assay.service.releases`).
CSV cells are read as strings with nothing turned into NA, so the table schema
(:mod:`.schema`), not pandas, decides what a value means. Writes are atomic: a reader never
sees half a table, and a failed write leaves nothing behind.

May import pandas (on first use) and :mod:`assay.platform.errors`; nothing of
``assay.service`` or ``assay.storage``.

Example:
    >>> import io
    >>> read_table(io.StringIO("arm,clicks\\nA,3\\nB,\\n"), parquet=False).to_dict("records")
    [{'arm': 'A', 'clicks': '3'}, {'arm': 'B', 'clicks': ''}]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any

from assay.platform.errors import UnsupportedError

PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | Path) -> bool:
    """Whether ``path`` names a Parquet file (by its suffix; anything else is CSV)."""
    return str(path).lower().endswith(PARQUET_SUFFIXES)


def read_table(source: str | Path | IO[Any], *, parquet: bool | None = None) -> Any:
    """A CSV or Parquet table as a pandas DataFrame.

    Args:
        source: A file path, or an open binary (Parquet, CSV) or text (CSV) buffer.
        parquet: Read Parquet rather than CSV; by default decided by the suffix of a path
            (a buffer is CSV).

    Raises:
        UnsupportedError: Parquet without ``pyarrow``.
        ValueError: pandas cannot parse the table (``pandas.errors.ParserError``,
            ``EmptyDataError`` and Parquet errors are all ``ValueError``s).
    """
    import pandas as pd

    if parquet is None:
        parquet = isinstance(source, str | Path) and is_parquet(source)
    if parquet:
        try:
            return pd.read_parquet(source)
        except ImportError as e:
            raise UnsupportedError("reading Parquet needs pyarrow (pip install pyarrow)") from e
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def write_table(rows: list[dict[str, Any]], columns: list[str], path: str | Path) -> None:
    """Write rows atomically (temporary file + rename) as CSV, or Parquet by the suffix.

    Args:
        rows: One dict per row, ``{column: value}``.
        columns: The column order of the file.
        path: The file to (over)write; its folder is created.

    Raises:
        UnsupportedError: Parquet without ``pyarrow`` (nothing is written).
    """
    import pandas as pd

    df = pd.DataFrame(rows, columns=columns)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if is_parquet(path):
            try:
                df.to_parquet(tmp, index=False)
            except ImportError as e:
                raise UnsupportedError("writing Parquet needs pyarrow") from e
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


__all__ = ["PARQUET_SUFFIXES", "is_parquet", "read_table", "write_table"]
