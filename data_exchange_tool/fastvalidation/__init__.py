"""Chunk-wise validation with a DRF serializer, giving exactly what DRF gives row by row."""

from .plan import ChunkPlan, compile_serializer

__all__ = ["ChunkPlan", "compile_serializer"]
