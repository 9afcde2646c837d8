import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The embedded synthetic sample, generated once per test session."""
    from agri_3s.sample import ensure_sample

    cached = os.environ.get("AGRI3S_SAMPLE_DIR")
    return ensure_sample(Path(cached) if cached else tmp_path_factory.mktemp("sample") / "s")


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real Sentinel-2 data not present: {SHARED_DATA} is absent "
                    "(it sits beside the checkout on the project's machines)")
    return SHARED_DATA
