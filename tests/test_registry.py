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


def test_a_handler_registry_finds_handlers_by_name_and_by_config_type():
    import dataclasses

    from arnq.registry import HandlerRegistry

    @dataclasses.dataclass(frozen=True)
    class ToyConfig:
        k: int = 1

        def to_dict(self):
            return {"toy": self.toy, **dataclasses.asdict(self)}

    registry = HandlerRegistry("toy method", name_field="toy")

    @registry.register_handler
    class Toy:
        name = "t1"
        config_cls = ToyConfig

    cfg = registry.config("t1", k=3)
    assert isinstance(registry.handler(cfg), Toy) and cfg.toy == "t1"
    assert registry.config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown parameter"):
        registry.config("t1", kk=3)
    with pytest.raises(ValueError, match="needs its 'toy'"):
        registry.config_from_dict({"k": 3})
    with pytest.raises(TypeError, match="not a registered toy method config"):
        registry.handler(object())
    with pytest.raises(ValueError, match="config class of its own"):
        registry.register_handler(type("Toy2", (), {"name": "t2", "config_cls": ToyConfig}))
