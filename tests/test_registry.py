import pytest

from imagetext.errors import RegistryError
from imagetext.registry import DATASETS, Registry, list_datasets


def test_register_build_and_list():
    reg = Registry("widget")

    @reg.register("a")
    def build_a(x=1):
        return ("a", x)

    assert reg.build("a", x=3) == ("a", 3)
    assert "a" in reg.names()
    with pytest.raises(KeyError):
        reg.register("a")(build_a)


def test_unknown_name_lists_known():
    with pytest.raises(RegistryError) as e:
        DATASETS.get("cubb")
    assert "cubb" in str(e.value) and "cub" in str(e.value)


def test_builtin_datasets_registered():
    assert {"birds", "scenes", "cub", "coco", "karpathy", "folder"} <= set(list_datasets())
