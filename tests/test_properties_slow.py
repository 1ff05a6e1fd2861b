"""The registry-wide attack properties at scale: at least 10,000 fresh hypothesis examples.

Every registered attack on every perturbation set it takes (``CASES`` of tests/test_attacks.py,
the same table the default suite replays with a few fixed examples) runs on ``EXAMPLES`` new
random batches of one to four images: the output stays in [0, 1] and inside its set, pixels
outside the masks (zero budget) are unchanged, inputs, model modes and gradients are untouched,
and batched equals per-sample in float64. Run with ``make test-slow`` (or
``pytest -m slow tests/test_properties_slow.py``); ``FOVEAL_PROPERTY_EXAMPLES`` sets the number
of examples per case (default 70, so 153 cases give 10,710 examples). The number of examples
that ran is printed at the end of the session.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_attacks import CASES, DTYPES, SEEDS, check_attack_properties

EXAMPLES = int(os.environ.get("FOVEAL_PROPERTY_EXAMPLES", "70"))

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]


@pytest.mark.parametrize(("attack_name", "threat_name"), CASES)
@settings(
    max_examples=EXAMPLES,
    derandomize=False,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(seed=SEEDS, n=st.integers(1, 4), dtype=DTYPES, targeted=st.booleans())
def test_attack_properties_at_scale(
    attack_name: str,
    threat_name: str,
    seed: int,
    n: int,
    dtype: torch.dtype,
    targeted: bool,
    property_examples: list[int],
) -> None:
    check_attack_properties(attack_name, threat_name, seed, n, dtype, targeted)
    property_examples[0] += 1
