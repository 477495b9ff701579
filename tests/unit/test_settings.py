import pytest

from chatstack.envsettings import SettingsError
from model_api.settings import PROJECT_ROOT, THREADS_RESERVE, Settings


def test_defaults_serve_the_embedded_model_on_loopback():
    s = Settings.from_env({})
    assert (s.host, s.port) == ("127.0.0.1", 8001)
    assert s.model_path == str(PROJECT_ROOT / "models" / "SmolLM2-135M-Instruct")
    assert s.model_name == "SmolLM2-135M-Instruct"
    assert (s.device, s.dtype, s.api_key) == ("auto", "auto", "")


def test_values_are_read_and_converted():
    s = Settings.from_env(
        {
            "MODEL_API_PORT": "9000",
            "DEVICE": "CPU",
            "MODEL_API_MAX_BODY_MB": "2",
            "MODELS_DIR": "/m",
            "MODEL_NAME": "mine",
        }
    )
    assert s.port == 9000
    assert s.device == "cpu"
    assert s.max_body_bytes == 2 * 1024 * 1024
    assert s.model_path == "/m/SmolLM2-135M-Instruct"
    assert s.model_name == "mine"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MODEL_API_PORT": "eighty"}, "MODEL_API_PORT"),
        ({"MODEL_API_PORT": "70000"}, "MODEL_API_PORT"),
        ({"DEVICE": "tpu"}, "DEVICE"),
        ({"DTYPE": "int8"}, "DTYPE"),
        ({"SSE_KEEPALIVE_SECONDS": "soon"}, "SSE_KEEPALIVE_SECONDS"),
        ({"MODEL_API_THREADS": "1"}, "MODEL_API_THREADS"),
    ],
)
def test_invalid_values_fail_naming_the_variable(env, variable):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "threads"),
    [
        ({}, 32 + 64 + THREADS_RESERVE),
        ({"MAX_BATCH_SIZE": "2", "MAX_WAITING": "2"}, 2 + 2 + THREADS_RESERVE),
        ({"ENGINE": "sequential", "MAX_WAITING": "2"}, 1 + 2 + THREADS_RESERVE),
        ({"MAX_BATCH_SIZE": "2", "MAX_WAITING": "2", "MODEL_API_THREADS": "50"}, 50),
    ],
)
def test_threads_cover_every_held_generation_and_a_reserve(env, threads):
    assert Settings.from_env(env).threads == threads


def test_settings_built_directly_size_their_threads_too():
    s = Settings(model_path="/x", model_name="m", models_dir=None, max_batch_size=4, max_waiting=8)
    assert (s.generation_capacity, s.threads) == (12, 12 + THREADS_RESERVE)


@pytest.mark.parametrize(
    "env",
    [
        {"MODEL_API_THREADS": "32"},  # the old default, below 16 + 64 + the reserve
        {"ENGINE": "sequential", "MAX_WAITING": "10", "MODEL_API_THREADS": "26"},
        {"MAX_WAITING": "2000"},  # sized past the 1024 threads allowed
    ],
)
def test_too_few_threads_for_the_queue_fail_naming_the_variables(env):
    with pytest.raises(SettingsError, match="MAX_WAITING") as caught:
        Settings.from_env(env)
    assert "MODEL_API_THREADS" in str(caught.value) or "1024" in str(caught.value)
