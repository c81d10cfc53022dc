"""Views of results: HTML (no heavy dependencies), terminal (rich) and matplotlib (lazy)."""
