"""Channel ingestion: landing files -> raw / quarantine, with a load audit."""

from crm.ingest.lines import FileRefused
from crm.ingest.loader import LoadBalanceError, LoadFailed, LoadResult, load_file

__all__ = ["FileRefused", "LoadBalanceError", "LoadFailed", "LoadResult", "load_file"]
