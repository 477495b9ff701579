"""Request bodies → typed models, or an OpenAI-shaped 400 that names the parameter."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chatstack.errors import APIError

Model = TypeVar("Model", bound=BaseModel)

# No request of ours nests deeper than a few levels; a limit far above that keeps a hostile
# `[[[[…]]]]` from reaching the parser's recursion limit, pydantic, or json.dumps upstream.
MAX_JSON_DEPTH = 64

# pydantic adds the member of a union it tried to an error's location ("str",
# "list[str]", "function-after[...]"): those are not parameter names.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple", "none"}


def load_json(raw: str | bytes) -> Any:
    """Standard JSON from the wire (no NaN or Infinity), nested at most MAX_JSON_DEPTH deep;
    anything else is a 400 `invalid_json`."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep() from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if nesting_exceeds(data, MAX_JSON_DEPTH):
        raise too_deep()
    return data


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def too_deep() -> APIError:
    return APIError(
        400,
        f"The JSON body nests lists or objects more than {MAX_JSON_DEPTH} levels deep.",
        code="invalid_json",
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(raw: bytes, model_cls: type[Model]) -> Model:
    """Bytes from the wire → a validated request model, or an OpenAI-shaped 400."""
    data = load_json(raw)
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> APIError:
    """The first problem pydantic found, as a 400 naming the parameter."""
    first = exc.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    param = param_path(loc)
    if first["type"] == "extra_forbidden":
        parent = param_path(loc[:-1])
        param = f"{parent}.{loc[-1]}" if parent else str(loc[-1])
        message = f"Unrecognized request argument supplied: {param}"
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first['msg']}"
    return APIError(400, message, param=param or None, code=_error_code(first["type"]))


def param_path(loc: tuple[Any, ...]) -> str:
    """('messages', 0, 'role') → 'messages[0].role'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _is_type_tag(str(part)):
            path += f".{part}" if path else str(part)
    return path


def _is_type_tag(part: str) -> bool:
    return part.lower() in _TYPE_TAGS or "[" in part or "-" in part


def _error_code(pydantic_type: str) -> str:
    if pydantic_type == "missing":
        return "missing_required_parameter"
    if pydantic_type == "extra_forbidden":
        return "unknown_parameter"
    if pydantic_type.endswith("_type") or pydantic_type.startswith("literal"):
        return "invalid_type"
    return "invalid_value"
