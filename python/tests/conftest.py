import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from alliance import Alliance, register_data  # noqa: E402


@pytest.fixture(scope="session")
def alliance():
    """A three-party alliance (`confide init` + `confide serve` per party) with the
    example datasets declared through Party.add_dataset."""
    al = Alliance().up()
    try:
        register_data({n: al.party(n) for n in ("alice", "bob", "carol")})
        yield al
    finally:
        al.down()
