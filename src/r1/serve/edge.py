"""The edge of `r1 serve`: everything between the socket and a validated request model.

Authentication, the content type, a body read in chunks and cut off at the size limit
(a chunked body is never read whole first), strict JSON (UTF-8, no NaN/Infinity, bounded
nesting, no lone UTF-16 surrogates anywhere), then the pydantic model. Each failure is an
OpenAI-shaped 4xx naming what was wrong. `install_error_handlers` makes sure that nothing
else (an unknown route, a wrong method, a bug) ever answers with a body of another shape.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from r1.serve import responses

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64
_TYPES = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
          500: "server_error", 503: "server_error", 504: "timeout_error"}  # else invalid_request_error


class APIError(Exception):
    """An answer with an OpenAI error body: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, *, param: Optional[str] = None, code: Optional[str] = None,
                 type_: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers
        self.type = type_ or _TYPES.get(status, "invalid_request_error")

    def body(self) -> dict:
        return responses.error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def authenticate(request: Request, api_key: Optional[str]) -> None:
    if not api_key:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode("utf-8", "replace"), api_key.encode()):
        raise APIError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")


def check_content_type(request: Request) -> None:
    """JSON only: a browser can send a cross-site form or a text/plain body without asking
    first (no CORS preflight), but never an application/json one."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise APIError(415, f"the request body must be JSON (Content-Type: application/json), not "
                            f"{media or 'a body without a Content-Type'}", code="unsupported_media_type")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read chunk by chunk and refused as soon as it passes `limit` bytes."""
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > limit:
        raise APIError(413, f"the request body of {size} bytes is over the limit of {limit}", code="body_too_large")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise APIError(413, f"the request body is over the limit of {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def parse_json(raw: bytes) -> dict:
    """Strict JSON object: UTF-8, finite numbers, nesting of at most MAX_JSON_DEPTH, and
    strings (keys too) that are valid Unicode (a lone surrogate such as "\\ud800" is refused)."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not UTF-8: {e}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                       code="invalid_json") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, integers over Python's 4300-digit limit
        raise APIError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    _check_tree(body)
    return body


def _check_tree(body: Any) -> None:
    """Depth and Unicode checks, iteratively (a recursive walk is itself a stack hazard)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise APIError(400, f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                           param=path or None, code="invalid_json")
        if isinstance(node, str):
            _check_text(node, path)
        elif isinstance(node, dict):
            for k, v in node.items():
                _check_text(k, path)
                stack.append((v, f"{path}.{k}" if path else k, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(node))


def _check_text(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(400, f"{path or 'body'}: the text holds a lone UTF-16 surrogate "
                            f"({s[e.start]!r} at position {e.start}); send valid Unicode",
                       param=path or None, code="invalid_value") from None


def validate(model: type, body: dict) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        param = ".".join(str(p) for p in err.get("loc", ())) or None
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        code = "unsupported_parameter" if err.get("type") == "unsupported_parameter" else "invalid_value"
        raise APIError(400, f"{param}: {msg}" if param else msg, param=param, code=code) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return APIError(404, f"no route {request.method} {request.url.path}", code="not_found").response()
        if exc.status_code == 405:
            return APIError(405, f"{request.method} is not allowed on {request.url.path}",
                            code="method_not_allowed").response()
        return APIError(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return APIError(400, str(exc.errors()[:1]), code="invalid_value").response()

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return APIError(500, f"internal error ({type(exc).__name__}); the server goes on serving",
                        code="internal_error").response()


ERROR_RESPONSES = {
    status: {"model": responses.ErrorResponse, "description": text} for status, text in {
        400: "invalid request: the body, a parameter's value, or an unsupported parameter (named in `param`)",
        401: "missing or wrong API key",
        404: "unknown model or route",
        413: "request body too large",
        415: "the body is not application/json",
        429: "the queue is full (see Retry-After)",
        500: "the generation of this request failed (the server goes on)",
        503: "the engine is down or the server is shutting down",
        504: "the request took longer than the server's timeout",
    }.items()}


def add_openapi(app: FastAPI, bodies: dict[str, type], bearer: bool, extra: tuple[type, ...] = ()) -> None:
    """Describe the request bodies (validated by hand, so FastAPI cannot see them), the
    models only referenced by hand (`extra`: stream chunks) and the bearer authentication
    in the OpenAPI document."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                          description="OpenAI-compatible API with R1's reasoning_content")
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (*bodies.values(), *extra):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        for path, model in bodies.items():
            doc["paths"][path]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        if bearer:
            doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, item in doc["paths"].items():
                if path.startswith("/v1/"):
                    for op in item.values():
                        op["security"] = [{"bearer": []}]
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
