import pytest
from data_utils import write_caption_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two shards of 32 captioned images each; tests only read them."""
    return write_caption_shards(tmp_path_factory.mktemp("shards"), num_shards=2)
