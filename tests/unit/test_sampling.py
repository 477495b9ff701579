import torch

from model_api.sampling import Sampler, SamplingParams

VOCAB = 8


def sampler(**params) -> Sampler:
    return Sampler(SamplingParams(max_tokens=10, **params), VOCAB, torch.device("cpu"))


def logits(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


FLAT = logits(1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02)


def test_temperature_zero_is_greedy():
    assert sampler(temperature=0).next_token(logits(0, 3, 1, 0, 0, 0, 0, 0)) == 1


def test_same_seed_same_tokens():
    def draw(seed):
        s = sampler(temperature=1.0, seed=seed)
        return [s.next_token(FLAT) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_tiny_top_p_keeps_only_the_most_likely_token():
    s = sampler(temperature=1.0, top_p=0.01, seed=1)
    assert {s.next_token(FLAT) for _ in range(20)} == {1}


def test_top_p_zero_still_picks_a_token():
    assert sampler(temperature=1.0, top_p=0.0).next_token(FLAT) == 1


def test_frequency_penalty_discourages_repeats():
    s = sampler(temperature=0, frequency_penalty=2.0)
    first = s.next_token(logits(0, 1.0, 0.5, 0, 0, 0, 0, 0))
    second = s.next_token(logits(0, 1.0, 0.5, 0, 0, 0, 0, 0))
    assert (first, second) == (1, 2)


def test_presence_penalty_discourages_any_seen_token():
    s = sampler(temperature=0, presence_penalty=1.0)
    tokens = [s.next_token(logits(0, 1.0, 0.5, 0, 0, 0, 0, 0)) for _ in range(3)]
    assert tokens[:2] == [1, 2]
