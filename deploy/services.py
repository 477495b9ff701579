"""The services of the stack and the exact commands that start them.

The local runner (`make run`) and the compose file start each service with the same
command, so what is tested here is what runs in a container.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    health_path: str
    port_variable: str
    default_port: int


MODEL_API = Service(
    name="model_api",
    command=("gunicorn", "-c", "model_api/gunicorn.conf.py", "model_api.app:create_app()"),
    health_path="/health",
    port_variable="MODEL_API_PORT",
    default_port=8001,
)
APP_SERVICE = Service(
    name="app_service",
    command=("gunicorn", "-c", "app_service/gunicorn.conf.py", "app_service.app:create_app()"),
    health_path="/api/health",
    port_variable="APP_PORT",
    default_port=8000,
)
# Start order: each service waits for the one before it to be healthy.
STACK = (MODEL_API, APP_SERVICE)
