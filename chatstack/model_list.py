"""OpenAI's model list, shared by the model API and the app service's pass-through:
`GET /v1/models/{id}` is one entry of `GET /v1/models` (openai clients'
`models.retrieve`), or OpenAI's 404 `model_not_found`."""

from __future__ import annotations

from typing import Any

from chatstack.errors import APIError


def model_from_list(listing: dict[str, Any], model_id: str) -> dict[str, Any]:
    """The entry of `listing` (`{"object": "list", "data": [...]}`) whose id is `model_id`."""
    for entry in listing.get("data", []):
        if entry.get("id") == model_id:
            return entry
    raise APIError(
        404,
        f"The model '{model_id}' does not exist.",
        param="model",
        code="model_not_found",
    )
