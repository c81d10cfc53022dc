"""JSON shapes of the viewer API (pydantic models, so the OpenAPI schema documents them).

Non-finite numbers travel as ``null``: JSON has no NaN, and a NaN score must not turn a page into a 500.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import BaseModel, Field

from ..viz.color import diverging_rgb, overlay_rgb, png_base64, symmetric_limit
from ..viz.views import ExampleInfo, FeaturePanel, ImagePanel, MatrixPanel, Panel, SeriesPanel, TokenPanel

Num = float | None


def num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def nums(t: torch.Tensor) -> list[Any]:
    """A nested list of floats with non-finite entries as ``None``."""
    if t.dim() == 0:
        return [num(t)]
    if t.dim() == 1:
        return [num(v) for v in t.tolist()]
    return [nums(row) for row in t]


class ExampleOut(BaseModel):
    index: int
    label: str | None = None
    prediction: str | None = None
    score: Num = None
    relative_error: Num = None
    converged: bool | None = None
    steps: int | None = None


class ImagePanelOut(BaseModel):
    type: Literal["image"] = "image"
    name: str
    height: int
    width: int
    limit: float = Field(description="colour limit: the signed heatmap spans [-limit, limit]")
    heatmap_png: str = Field(description="base64 PNG of the signed heatmap")
    overlay_png: str | None = Field(None, description="base64 PNG of |attribution| over the input, if stored")


class TokenPanelOut(BaseModel):
    type: Literal["tokens"] = "tokens"
    name: str
    tokens: list[str]
    scores: list[Num]
    limit: float


class MatrixPanelOut(BaseModel):
    type: Literal["matrix"] = "matrix"
    name: str
    sources: list[str]
    targets: list[str]
    values: list[list[Num]]
    limit: float


class FeaturePanelOut(BaseModel):
    type: Literal["features"] = "features"
    name: str
    features: list[str]
    scores: list[Num]
    limit: float


class SeriesPanelOut(BaseModel):
    type: Literal["series"] = "series"
    name: str
    channels: list[str]
    values: list[list[Num]]
    signal: list[list[Num]] | None = None
    limit: float


PanelOut = Annotated[
    Union[ImagePanelOut, TokenPanelOut, MatrixPanelOut, FeaturePanelOut, SeriesPanelOut], Field(discriminator="type")
]


class ExampleViewOut(BaseModel):
    info: ExampleOut
    panels: list[PanelOut]


class ResultSummary(BaseModel):
    path: str = Field(description="path relative to RESULTS_DIR; use it in /api/results/{path}")
    format: str | None = None
    kind: str | None = None
    method: str | None = None
    title: str | None = None
    size: int
    examples: list[ExampleOut] = Field(description="the examples that pass the filters")
    total_examples: int
    error: str | None = Field(None, description="why the file could not be read, if it could not")


class ResultList(BaseModel):
    root: str
    results: list[ResultSummary]
    labels: list[str] = Field(description="every label in the folder (unfiltered), for filter menus")
    predictions: list[str]


class ResultDetail(BaseModel):
    summary: ResultSummary
    params: dict[str, str] = Field(
        description="what was explained and how (method, target, baseline, integration settings), in the result's "
        "order; each value as text (JSON for numbers, lists and mappings); the page shows them as a table"
    )
    examples: list[ExampleViewOut]


class CorpusSummary(BaseModel):
    path: str
    shards: int
    documents: int | None = None
    tokens: int | None = None
    classes: list[str] = []
    manifest: dict[str, str] = {}
    columns: list[str] = []
    error: str | None = None
    damaged: bool = False  # the run exists but cannot be read (``error`` says why, naming bad shards)


class CorpusList(BaseModel):
    corpora: list[CorpusSummary]


class DocumentRow(BaseModel):
    doc_id: str
    label: str | None = None
    prediction: str | None = None
    relative_error: Num = None
    tokens: int
    preview: str


class DocumentTable(BaseModel):
    corpus: CorpusSummary
    total: int = Field(description="documents that pass the filters")
    rows: list[DocumentRow]


class CueRow(BaseModel):
    cls: str = Field(description="predicted class (gold label when no prediction is stored)")
    rank: int
    token: str
    mean_score: Num = Field(description="mean attribution per document containing the token or word")
    total_score: Num = None
    weight: Num = Field(None, description="TF-IDF weighted score used for the ranking, when the store provides it")
    documents: int


class CueTable(BaseModel):
    corpus: str
    by: str = Field(description="the column the classes come from")
    rows: list[CueRow]


class ReportList(BaseModel):
    reports: list[str]


def example_out(info: ExampleInfo) -> ExampleOut:
    return ExampleOut(
        index=info.index,
        label=info.label,
        prediction=info.prediction,
        score=num(info.score),
        relative_error=num(info.relative_error),
        converged=info.converged,
        steps=info.steps,
    )


def panel_out(panel: Panel) -> PanelOut:
    """JSON for one panel; images travel as PNGs (signed heatmap and overlay), everything else as numbers."""
    if isinstance(panel, ImagePanel):
        limit = symmetric_limit(panel.values)
        overlay = None if panel.image is None else png_base64(overlay_rgb(panel.image, panel.values, limit))
        return ImagePanelOut(
            name=panel.name,
            height=int(panel.values.shape[0]),
            width=int(panel.values.shape[1]),
            limit=limit,
            heatmap_png=png_base64(diverging_rgb(panel.values, limit)),
            overlay_png=overlay,
        )
    if isinstance(panel, TokenPanel):
        return TokenPanelOut(
            name=panel.name, tokens=list(panel.tokens), scores=nums(panel.scores), limit=symmetric_limit(panel.scores)
        )
    if isinstance(panel, MatrixPanel):
        return MatrixPanelOut(
            name=panel.name,
            sources=list(panel.sources),
            targets=list(panel.targets),
            values=nums(panel.values),
            limit=symmetric_limit(panel.values),
        )
    if isinstance(panel, FeaturePanel):
        return FeaturePanelOut(
            name=panel.name,
            features=list(panel.features),
            scores=nums(panel.scores),
            limit=symmetric_limit(panel.scores),
        )
    assert isinstance(panel, SeriesPanel)
    return SeriesPanelOut(
        name=panel.name,
        channels=list(panel.channels),
        values=nums(panel.values),
        signal=None if panel.signal is None else nums(panel.signal),
        limit=symmetric_limit(panel.values),
    )
