"""Ingestion: turning published datasets (PixMo parquet, image URLs) into pixmo-stream input."""
