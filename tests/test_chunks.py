"""Points per pass: the probe's measurements and the chunk rule built on them (bench/chunks.py measures it)."""

from __future__ import annotations

import pytest
import torch

import integrand
from integrand.engine import BYTES_PER_SAVED, chunk_size, probe
from integrand.errors import InputError
from integrand.inputs import as_input_set

CPU = torch.device("cpu")


def test_chunk_holds_bytes_per_saved_tensor_within_the_budget() -> None:
    per_point = 3 << 20
    # 40 saved tensors at 1.5 MiB each: 60 MiB, i.e. 20 points of 3 MiB.
    assert chunk_size(None, None, per_point, CPU, saved_tensors=40) == -(-40 * BYTES_PER_SAVED // per_point) == 20
    assert chunk_size(None, None, per_point, CPU, saved_tensors=41) == 21  # rounded up
    assert chunk_size(None, 5 * per_point, per_point, CPU, saved_tensors=40) == 5  # the budget wins
    assert chunk_size(None, None, 1 << 30, CPU, saved_tensors=40) == 1  # never below one point
    assert chunk_size(7, None, per_point, CPU, saved_tensors=40) == 7  # batch_size= is taken as given
    with pytest.raises(InputError, match="memory_budget"):
        chunk_size(None, 0, per_point, CPU, saved_tensors=40)


def test_probe_counts_the_saved_tensors_of_one_pass() -> None:
    small = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    deep = torch.nn.Sequential(*[m for _ in range(10) for m in (torch.nn.Linear(8, 8), torch.nn.ReLU())])
    x = as_input_set(torch.randn(4, 8))
    a, b = probe(small, x, None), probe(deep, x, None)
    assert 3 <= a.saved_tensors < b.saved_tensors
    assert b.saved_tensors >= 20  # one or more per linear layer and per ReLU


def _chunk_of(model: torch.nn.Module, x: torch.Tensor) -> int:
    rows: list[int] = []

    def spy(t: torch.Tensor) -> torch.Tensor:
        rows.append(t.shape[0])
        return model(t)  # type: ignore[no-any-return]

    integrand.integrated_gradients(spy, x, target=0, steps=64)
    return max(rows[3:])  # after the probe and the two score passes


def test_small_models_get_many_points_and_wide_ones_few() -> None:
    torch.manual_seed(0)
    # Dispatch-bound: a tiny MLP on 4 features; a chunk must hold many points to pay for the per-op cost.
    tiny = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).eval()
    assert _chunk_of(tiny, torch.randn(8, 4)) == 8 * 64  # all points in one pass
    # Memory-bound: two 4096-wide layers on a long flat input save megabytes per point in a few tensors.
    wide = torch.nn.Sequential(torch.nn.Linear(65536, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2)).eval()
    assert _chunk_of(wide, torch.randn(2, 65536)) <= 8
