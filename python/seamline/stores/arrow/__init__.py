"""In-memory Arrow tables (`sl.arrow`) and Parquet files (`sl.parquet`): read-only sides, no store
object to share (`read.py`). `ADAPTERS` registers both (`seamline.stores.registry`)."""

from seamline.stores.arrow.read import ArrowSource, ArrowStreamExportable, ParquetSource
from seamline.stores.protocols import Replayable, Source
from seamline.stores.registry import StoreAdapter


def _conforms(arrow: ArrowSource, parquet: ParquetSource) -> tuple[Source, Replayable, Source]:
    """Never called: mypy checks here that the adapters have every capability they claim."""
    return arrow, arrow, parquet


ADAPTERS = {"arrow": StoreAdapter(open=ArrowSource), "parquet": StoreAdapter(open=ParquetSource)}

__all__ = ["ADAPTERS", "ArrowSource", "ArrowStreamExportable", "ParquetSource"]
