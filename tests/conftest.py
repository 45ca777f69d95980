"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="module")
def ray_cluster(request):
    """A local Ray cluster for one test module, sized by the module's ``RAY_RESOURCES`` (ray.init
    keyword arguments, e.g. ``{"num_cpus": 6, "num_gpus": 4}``: Ray only counts logical GPUs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")  # Ray 2.60 turns token authentication on by default
        ray.init(**request.module.RAY_RESOURCES, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()
