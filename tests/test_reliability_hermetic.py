"""The test suite itself is hermetic: a temporary asset cache, no unmarked downloads, no offline-mode leaks."""

import os
from pathlib import Path

import pytest

from elfctl.data import assets

INITIAL_OFFLINE = os.environ.get("HF_HUB_OFFLINE")


def test_1_force_offline_inside_a_test():
    import huggingface_hub.constants as hc

    assets.force_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and hc.HF_HUB_OFFLINE is True
    assets._HUB_REACHABLE["https://example.invalid"] = False


def test_2_does_not_leak_into_the_next_test():
    import huggingface_hub.constants as hc

    assert os.environ.get("HF_HUB_OFFLINE") == INITIAL_OFFLINE
    assert hc.HF_HUB_OFFLINE == (INITIAL_OFFLINE is not None and INITIAL_OFFLINE.lower() in ("1", "true", "yes", "on"))
    assert "https://example.invalid" not in assets._HUB_REACHABLE


def test_the_asset_cache_is_the_sessions_not_the_users():
    root = assets.cache_root()
    assert root == Path(os.environ["ELFCTL_CACHE"])
    if not os.environ.get("ELFCTL_TEST_CACHE"):
        assert root != Path.home() / ".cache" / "elfctl" and "elfctl-cache" in root.name


def test_an_unmarked_test_cannot_download(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.network"):
        assets.resolve_asset("pypi:some-package==1.0/some_package/data.txt", data_dir=str(tmp_path))
