"""Mirrors of the official ``segment_anything.utils`` modules, for drop-in imports."""
