"""The FINRA OTC Transparency pipelines (ingest → normalize → compute) and their registry."""
