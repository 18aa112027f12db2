"""Bring your own router: a Router subclass of another package, named in the config by its import path, is
checked at config time (importable, a Router, keeps the interface) and built like a built-in router; its
source files become the code inputs of the jobs that build it."""
import sys
import textwrap

import pytest
import torch

from moe_rpo import config as cfg
from moe_rpo.code_inputs import plugin_sources
from moe_rpo.routers import METHODS, build_router
from moe_rpo.routers.plugin import check_interface

COSINE = {"method": "plugin", "target": "custom_router:CosineRouter", "options": {"temperature": 0.5}}


def test_the_example_plugin_builds_and_routes_like_a_built_in_router():
    router = build_router(COSINE, 8, 4, 2)
    out = router(torch.randn(16, 8))
    assert type(router).__module__ == "custom_router.cosine" and router.temperature == 0.5
    assert out.experts.shape == (16, 2) and torch.equal(out.experts, out.probs.topk(2, -1).indices)
    check_interface(router)
    assert "plugin" not in METHODS  # nothing registered globally


def test_a_config_with_the_plugin_validates_and_names_its_source_files():
    config = cfg.validate({"routers": {"cosine": COSINE}, "benchmark": {"methods": [{"router": "cosine", "k": 1}]}})
    assert config["routers"]["cosine"] == COSINE
    sources = plugin_sources(cfg.benchmark_toy_settings(config))
    assert [path.rsplit("/", 1)[-1] for path in sources] == ["__init__.py", "cosine.py"]
    assert plugin_sources(cfg.experiment_settings(config, "dilemma")) == []  # jobs that do not build it


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A module `my_routers` on sys.path with a good router and routers that break the interface."""
    (tmp_path / "my_routers.py").write_text(textwrap.dedent('''
        import torch
        from moe_rpo.routers import Router, RouterOutput

        class Good(Router):
            def __init__(self, dim, num_experts, k, scale: float = 1.0):
                super().__init__(dim, num_experts, k)
                self.gate = torch.nn.Linear(dim, num_experts)

            def forward(self, x, token_ids=None):
                probs = torch.softmax(self.gate(x), -1)
                weights, experts = probs.topk(self.k, -1)
                return RouterOutput(experts=experts, weights=weights, probs=probs)

        class WrongShape(Good):
            def forward(self, x, token_ids=None):
                out = super().forward(x, token_ids)
                return RouterOutput(experts=out.experts, weights=out.weights, probs=out.probs[:, :2])

        class Crashes(Good):
            def forward(self, x, token_ids=None):
                raise RuntimeError("boom")

        class NotARouter:
            pass
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("my_routers", None)


@pytest.mark.parametrize("spec, message", [
    ({"target": "my_routers:WrongShape"}, "routers.mine: its forward pass in training mode breaks the router "
                                          "interface: probs must be a tensor of shape [16, 4]"),
    ({"target": "my_routers:Crashes"}, "routers.mine: its forward pass failed in training mode: RuntimeError: boom"),
    ({"target": "my_routers:NotARouter"}, "routers.mine: plugin target 'my_routers:NotARouter' is not a subclass"),
    ({"target": "my_routers:Missing"}, "module 'my_routers' has no 'Missing'"),
    ({"target": "no_such_package.routers:Mine"}, "cannot import 'no_such_package.routers'"),
    ({"target": "my_routers:Good", "options": {"scael": 2.0}}, "has no option(s) ['scael']; it takes ['scale']"),
    ({"target": "my_routers"}, "does not match"),
])
def test_a_broken_plugin_is_refused_at_config_time_naming_its_key(plugin_module, spec, message):
    with pytest.raises(cfg.ConfigError) as error:
        cfg.validate({"routers": {"mine": {"method": "plugin", **spec}}})
    assert message in str(error.value)


def test_a_good_plugin_passes_the_check(plugin_module):
    config = cfg.validate({"routers": {"mine": {"method": "plugin", "target": "my_routers:Good",
                                                "options": {"scale": 2.0}}},
                           "benchmark": {"methods": [{"router": "mine", "k": 2}]}})
    assert build_router(config["routers"]["mine"], 8, 4, 2).k == 2


def test_the_readmes_walk_through_builds_a_checked_plugin_router(tmp_path, monkeypatch):
    """README 'Bring your own router': its module in a package of its own, its config over the defaults."""
    import yaml

    from conftest import ROOT

    section = (ROOT / "README.md").read_text().split("### Bring your own router\n", 1)[1].split("\n### ", 1)[0]
    module = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    config_text = section.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    package = tmp_path / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "my_module.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        (tmp_path / "my_benchmark.yaml").write_text(config_text)
        config = cfg.validate(cfg.load(ROOT / "config/config.yaml", tmp_path / "my_benchmark.yaml"))
        router = build_router(config["routers"]["mine"], 8, 4, 1)
        assert type(router).__name__ == "MyRouter" and router.temperature == 0.5
        assert {"router": "mine", "k": 1} in cfg.benchmark_toy_settings(config)["runs"]
        assert yaml.safe_load(config_text)["routers"]["mine"]["target"] == "my_package.my_module:MyRouter"
    finally:
        for name in ("my_package", "my_package.my_module"):
            sys.modules.pop(name, None)
