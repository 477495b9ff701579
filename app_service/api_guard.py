"""What every /api request and answer meets, before and after its route.

Cross-site request forgery: a page on another site can make the browser POST a form
(text/plain, urlencoded or multipart) or a "simple" fetch, and SameSite=Strict alone does
not cover a login (the attacker's own credentials need no cookie). So a request that
changes state must
- come from the site itself: an `Origin` header, when sent (browsers send it on every
  POST, PUT, PATCH and DELETE), must be one of SITE_ORIGINS, and `Sec-Fetch-Site` must not
  be `cross-site` — a client that sends neither (curl, scripts) is no browser and passes;
- carry a JSON body as `application/json`, which no form can send and a cross-site fetch
  only after a CORS preflight this service never answers. The upload route takes
  `multipart/form-data` and checks its own body. A request without a body needs no type.

Every /api answer, errors included, is `Cache-Control: no-store`: they are one user's data.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

from chatstack.errors import APIError

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = "application/json"
# Routes whose body is not JSON (uploads: multipart/form-data); they check it themselves.
OWN_BODY_ROUTES = frozenset({("POST", "/api/files"), ("POST", "/api/conversations/import")})


def install_api_guard(app: Flask) -> None:
    app.before_request(check_api_request)
    app.after_request(no_store)


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def check_api_request() -> None:
    """Refuse a state change under /api that a page of another site could have sent."""
    if request.method not in STATE_CHANGING or not is_api(request.path):
        return
    check_same_site(current_app.extensions["chatstack_settings"].site_origins)
    if (request.method, request.path.rstrip("/")) not in OWN_BODY_ROUTES:
        check_json_body()


def check_same_site(site_origins: tuple[str, ...]) -> None:
    origin = request.headers.get("Origin")
    cross_origin = origin is not None and origin.rstrip("/") not in site_origins
    if cross_origin or request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        raise APIError(
            403,
            "Requests from other sites may not change anything here.",
            code="cross_site_request",
        )


def check_json_body() -> None:
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if not has_body and not request.mimetype:
        return
    if request.mimetype != JSON:
        raise APIError(
            415,
            f"Send the request body as JSON with 'Content-Type: {JSON}'.",
            code="unsupported_media_type",
        )


def no_store(response: Response) -> Response:
    if is_api(request.path):
        response.headers["Cache-Control"] = "no-store"
    return response
