"""The viewer's FastAPI app: a static page plus a read-only JSON API over one RESULTS_DIR.

Only GET routes exist. Anything that is not a readable entry inside RESULTS_DIR is a 404 that
looks the same whatever the reason. Responses carry a strict Content-Security-Policy: the page
runs only its own script and builds the DOM with ``textContent``; HTML reports are served
sandboxed (no scripts, opaque origin). Every response, 404s and 500s included, carries the security
headers (:mod:`integrand.viewer.server`); a run that cannot be read is an answer (422, or a
``damaged`` entry in the listing), never a 500.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Sequence

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ..errors import IntegrandError
from .corpus import CorpusRun, corpus_summary
from .files import REPORT_SUFFIX, ResultsDir
from .schema import (
    CorpusList,
    CueTable,
    DocumentTable,
    ExampleViewOut,
    ReportList,
    ResultDetail,
    ResultList,
    TokenPanelOut,
    example_out,
    panel_out,
)
from .server import HEADER_TIMEOUT, PAGE_CSP, SecurityHeaders, make_server
from .store import Filters, ResultStore, params_text, summary, visible

__all__ = ["PAGE_CSP", "REPORT_CSP", "create_app", "default_allowed_hosts", "run_server"]
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

NOT_FOUND = "not found"

LabelQ = Annotated[str | None, Query(max_length=500, description="keep examples with this gold label")]
PredictionQ = Annotated[str | None, Query(max_length=500, description="keep examples with this prediction")]
MinErrQ = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="minimum relative completeness error")]
MaxErrQ = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="maximum relative completeness error")]
KindQ = Annotated[
    str | None, Query(max_length=20, description="panel kind: image, tokens, matrix, features, series, mixed")
]
RunQ = Annotated[str, Query(min_length=1, max_length=4096, description="corpus run path relative to RESULTS_DIR")]


def _static(name: str) -> bytes:
    return resources.files("integrand.viewer").joinpath("static", name).read_bytes()


def create_app(results_dir: str | Path, *, allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The viewer app for ``results_dir``. ``allowed_hosts`` restricts the Host header (DNS-rebinding guard)."""
    results = ResultsDir.open(results_dir)
    store = ResultStore(results)
    app = FastAPI(
        title="integrand viewer",
        version="1",
        description="Read-only browser of saved integrand results and corpus runs in one folder.",
        docs_url=None,
        redoc_url=None,
    )
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    app.add_middleware(SecurityHeaders)  # added last: outside the Host check, so its 400s are covered too

    @app.exception_handler(IntegrandError)
    async def unreadable(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def filters(label: str | None, prediction: str | None, min_error: float | None, max_error: float | None,
                kind: str | None = None) -> Filters:
        return Filters(label=label, prediction=prediction, min_error=min_error, max_error=max_error, kind=kind)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> Response:
        return Response(_static("index.html"), media_type=STATIC["index.html"])

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, NOT_FOUND)
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/api/results", response_model=ResultList, summary="List saved results")
    def list_results(
        label: LabelQ = None, prediction: PredictionQ = None, min_error: MinErrQ = None, max_error: MaxErrQ = None,
        kind: KindQ = None,
    ) -> ResultList:
        f = filters(label, prediction, min_error, max_error, kind)
        loaded = store.all()
        infos = [e.info for item in loaded if item.view is not None for e in item.view.examples]
        return ResultList(
            root=results.root.name,
            results=[summary(item, f) for item in loaded if visible(item, f)],
            labels=sorted({i.label for i in infos if i.label is not None}),
            predictions=sorted({i.prediction for i in infos if i.prediction is not None}),
        )

    @app.get("/api/results/{path:path}", response_model=ResultDetail, summary="One result with its views",
             responses={404: {"description": "no such result inside RESULTS_DIR"}})
    def get_result(
        path: str, label: LabelQ = None, prediction: PredictionQ = None, min_error: MinErrQ = None,
        max_error: MaxErrQ = None,
    ) -> ResultDetail:
        item = store.get(path)
        if item is None or item.view is None:
            raise HTTPException(404, NOT_FOUND if item is None else item.error or NOT_FOUND)
        f = filters(label, prediction, min_error, max_error)
        return ResultDetail(
            summary=summary(item, f),
            params=params_text(dict(item.view.params)),
            examples=[
                ExampleViewOut(info=example_out(e.info), panels=[panel_out(p) for p in e.panels])
                for e in item.view.examples
                if f.keep(e.info)
            ],
        )

    def open_run(run: str) -> CorpusRun:
        if run != "." and run not in results.corpora():
            raise HTTPException(404, NOT_FOUND)
        if run == "." and "." not in results.corpora():
            raise HTTPException(404, NOT_FOUND)
        try:
            return CorpusRun(results, run)
        except IntegrandError as exc:
            raise HTTPException(422, str(exc)) from exc

    @app.get("/api/corpora", response_model=CorpusList, summary="List corpus runs (damaged ones flagged)")
    def list_corpora() -> CorpusList:
        return CorpusList(corpora=[corpus_summary(results, run) for run in results.corpora()])

    @app.get("/api/corpus/documents", response_model=DocumentTable, summary="Documents of a corpus run",
             responses={404: {"description": "no such run"}})
    def corpus_documents(
        run: RunQ, label: LabelQ = None, prediction: PredictionQ = None, min_error: MinErrQ = None,
        max_error: MaxErrQ = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> DocumentTable:
        corpus = open_run(run)
        try:
            total, rows = corpus.documents(filters(label, prediction, min_error, max_error), limit, offset)
            return DocumentTable(corpus=corpus.summary(), total=total, rows=rows)
        finally:
            corpus.close()

    @app.get("/api/corpus/document", response_model=TokenPanelOut, summary="Token scores of one document",
             responses={404: {"description": "no such run or document"}})
    def corpus_document(run: RunQ, doc_id: Annotated[str, Query(max_length=500)]) -> TokenPanelOut:
        corpus = open_run(run)
        try:
            tokens, scores = corpus.document(doc_id)
        finally:
            corpus.close()
        if not tokens:
            raise HTTPException(404, NOT_FOUND)
        limit = max((abs(s) for s in scores if s is not None), default=0.0) or 1.0
        return TokenPanelOut(name=f"document {doc_id}", tokens=tokens, scores=scores, limit=limit)

    @app.get("/api/corpus/cues", response_model=CueTable, summary="Lexical cues per class of a corpus run",
             responses={404: {"description": "no such run"}})
    def corpus_cues(
        run: RunQ, top: Annotated[int, Query(ge=1, le=200)] = 10, min_df: Annotated[int, Query(ge=1, le=10**6)] = 1,
        cls: Annotated[str | None, Query(max_length=500)] = None,
    ) -> CueTable:
        corpus = open_run(run)
        try:
            by, rows = corpus.cues(top, min_df, cls)
        except IntegrandError as exc:
            raise HTTPException(422, str(exc)) from exc
        finally:
            corpus.close()
        return CueTable(corpus=run, by=by, rows=rows)

    @app.get("/api/reports", response_model=ReportList, summary="List HTML reports (e.g. from integrand demo)")
    def list_reports() -> ReportList:
        return ReportList(reports=results.files(REPORT_SUFFIX))

    @app.get("/reports/{path:path}", include_in_schema=False)
    def report(path: str) -> Response:
        real = results.resolve(path, suffix=REPORT_SUFFIX)
        if real is None:
            raise HTTPException(404, NOT_FOUND)
        response = Response(real.read_bytes(), media_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response

    app.state.results = results
    app.state.store = store
    return app


def default_allowed_hosts(host: str) -> list[str] | None:
    """Loopback binds accept only loopback Host headers; an explicit other host accepts any."""
    return list(LOOPBACK_HOSTS) if host in LOOPBACK_HOSTS else None


def run_server(
    results_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765, header_timeout: float = HEADER_TIMEOUT
) -> Any:
    """Serve ``results_dir`` with uvicorn until interrupted; request heads must arrive within ``header_timeout`` s."""
    app = create_app(results_dir, allowed_hosts=default_allowed_hosts(host))
    make_server(app, host=host, port=port, header_timeout=header_timeout).run()
