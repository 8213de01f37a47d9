import pytest

from arnq.registry import Registry, UnknownNameError


def test_register_get_and_list():
    reg = Registry("widget")
    reg.register("alpha", 1)

    @reg.register("beta")
    def beta():
        return 2

    assert reg.get("alpha") == 1 and reg.get("beta") is beta
    assert reg.names() == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2


def test_duplicates_are_refused():
    reg = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)


def test_miss_suggests_and_lists_choices():
    reg = Registry("model")
    for name in ("vit_mnist", "minilm_rt"):
        reg.register(name, name)
    with pytest.raises(UnknownNameError) as err:
        reg.get("vit_mnst")
    assert "Did you mean 'vit_mnist'?" in str(err.value) and "minilm_rt" in str(err.value)
    assert isinstance(err.value, ValueError)
