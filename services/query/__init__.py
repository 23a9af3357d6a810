"""The query service: materialized documents, lists, watches, schemas, blobs and entries."""
