"""Channel ingestion: landing files -> raw / quarantine, with a load audit."""

from crm.ingest.loader import FileRefused, LoadBalanceError, LoadResult, load_file

__all__ = ["FileRefused", "LoadBalanceError", "LoadResult", "load_file"]
