"""Views of results: HTML (no heavy dependencies), terminal (rich) and matplotlib (lazy).

Every result type is first turned into a :class:`ResultView` (see :mod:`.views`); the renderers
only know those panels.
"""

from .adapters import as_view
from .show import figure, show, to_html
from .views import (
    ExampleInfo,
    ExampleView,
    FeaturePanel,
    ImagePanel,
    MatrixPanel,
    ResultView,
    SeriesPanel,
    TokenPanel,
    Viewable,
    matrix_view,
    token_view,
)

__all__ = [
    "ExampleInfo",
    "ExampleView",
    "FeaturePanel",
    "ImagePanel",
    "MatrixPanel",
    "ResultView",
    "SeriesPanel",
    "TokenPanel",
    "Viewable",
    "as_view",
    "figure",
    "matrix_view",
    "show",
    "to_html",
    "token_view",
]
