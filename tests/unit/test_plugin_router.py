"""Bring your own router: a Router subclass of another package, named in the config by its import path, is
checked at config time (importable, a Router, keeps the interface) and built like a built-in router; its
source files become the code inputs of the jobs that build it."""
import re
import sys
import textwrap

import pytest
import torch

from moe_rpo import config as cfg
from moe_rpo import sections, values
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
    sources = plugin_sources(sections.benchmark_toy_settings(config))
    assert [path.rsplit("/", 1)[-1] for path in sources] == ["__init__.py", "cosine.py"]
    assert plugin_sources(sections.experiment_settings(config, "dilemma")) == []  # jobs that do not build it


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
    ({"target": "my_routers:WrongShape"}, "routers.mine: router 'mine' with k=1 over 4 experts: its forward pass in "
                                          "training mode breaks the router interface: probs must be a tensor of shape "
                                          "[16, 4]"),
    ({"target": "my_routers:Crashes"}, "routers.mine: router 'mine' with k=1 over 4 experts: its forward pass failed "
                                       "in training mode: RuntimeError: boom"),
    ({"target": "my_routers:NotARouter"}, "routers.mine: plugin target 'my_routers:NotARouter' is not a subclass"),
    ({"target": "my_routers:Missing"}, "module 'my_routers' has no 'Missing'"),
    ({"target": "no_such_package.routers:Mine"}, "cannot import 'no_such_package.routers'"),
    ({"target": "my_routers:Good", "options": {"scael": 2.0}}, "has no option(s) ['scael']; it takes ['scale']"),
    ({"target": "my_routers"}, "does not match"),
])
def test_a_broken_plugin_is_refused_at_config_time_naming_its_key(plugin_module, spec, message):
    with pytest.raises(values.ConfigError) as error:
        cfg.validate({"routers": {"mine": {"method": "plugin", **spec}}})
    assert message in str(error.value)


def test_a_good_plugin_passes_the_check(plugin_module):
    config = cfg.validate({"routers": {"mine": {"method": "plugin", "target": "my_routers:Good",
                                                "options": {"scale": 2.0}}},
                           "benchmark": {"methods": [{"router": "mine", "k": 2}]}})
    assert build_router(config["routers"]["mine"], 8, 4, 2).k == 2


def test_the_readmes_walk_through_builds_a_checked_plugin_router(tmp_path, monkeypatch):
    """docs/routers.md 'Bring your own router': its module in a package of its own, its config over the defaults."""
    import yaml
    from conftest import ROOT

    section = (ROOT / "docs/routers.md").read_text().split("## Bring your own router\n", 1)[1].split("\n## ", 1)[0]
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
        assert {"router": "mine", "k": 1} in sections.benchmark_toy_settings(config)["methods"]
        assert yaml.safe_load(config_text)["routers"]["mine"]["target"] == "my_package.my_module:MyRouter"
    finally:
        for name in ("my_package", "my_package.my_module"):
            sys.modules.pop(name, None)


@pytest.fixture
def broken_modules(tmp_path, monkeypatch):
    """Plugin modules that fail when imported, and routers that ignore k or the number of experts."""
    for name, body in {"raises_at_import": "raise RuntimeError('no GPU here')",
                       "bad_syntax": "def broken(:\n    pass",
                       "exits_at_import": "import sys\nsys.exit(0)"}.items():
        (tmp_path / f"{name}.py").write_text(body + "\n")
    (tmp_path / "careless.py").write_text(textwrap.dedent('''
        import torch
        from moe_rpo.routers import Router, RouterOutput

        class IgnoresK(Router):
            def __init__(self, dim, num_experts, k):
                super().__init__(dim, num_experts, k)
                self.gate = torch.nn.Linear(dim, num_experts)

            def forward(self, x, token_ids=None):
                probs = torch.softmax(self.gate(x), -1)
                weights, experts = probs.topk(1, -1)  # one expert, whatever k
                return RouterOutput(experts=experts, weights=weights, probs=probs)

        class FourExperts(IgnoresK):
            def __init__(self, dim, num_experts, k):
                super().__init__(dim, 4, k)  # whatever the layer has
                self.num_experts = num_experts

            def forward(self, x, token_ids=None):
                probs = torch.softmax(self.gate(x), -1)
                weights, experts = probs.topk(self.k, -1)
                return RouterOutput(experts=experts, weights=weights, probs=probs)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("raises_at_import", "bad_syntax", "exits_at_import", "careless"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("target, message", [
    ("raises_at_import:R", "importing 'raises_at_import' raised RuntimeError: no GPU here"),
    ("bad_syntax:R", "importing 'bad_syntax' raised SyntaxError"),
    ("exits_at_import:R", "importing 'exits_at_import' raised SystemExit"),
])
def test_a_plugin_module_that_fails_at_import_is_one_line_naming_the_router(broken_modules, target, message):
    with pytest.raises(values.ConfigError) as error:
        cfg.validate({"routers": {"mine": {"method": "plugin", "target": target}}})
    assert str(error.value).startswith("routers.mine: ") and message in str(error.value)
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("method, message", [
    ({"router": "mine", "k": 2}, "benchmark.methods.0: router 'mine' with k=2 over 8 experts: its forward pass in "
                                 "training mode breaks the router interface: experts must be a tensor of shape"),
])
def test_a_plugin_is_checked_at_every_k_and_number_of_experts_the_config_uses(broken_modules, method, message):
    """A plugin that ignores k, listed with k=2, would write a '_k2' row that routes one expert per token."""
    with pytest.raises(values.ConfigError, match=re.escape(message)):
        cfg.validate({"routers": {"mine": {"method": "plugin", "target": "careless:IgnoresK"}},
                      "benchmark": {"methods": [method]}})
    with pytest.raises(values.ConfigError, match=r"shakespeare_moe.methods.6: router 'mine' with k=1 over 8 experts"):
        cfg.validate({"routers": {"mine": {"method": "plugin", "target": "careless:FourExperts"}},
                      "shakespeare_moe": {"num_experts": 8, "methods": cfg.validate({})["shakespeare_moe"]["methods"]
                                          + [{"router": "mine", "k": 1}]}})


@pytest.mark.parametrize("options, message", [
    ({"proj_dim": 0}, "routers.cool.options.proj_dim: 0 is less than the minimum of 1"),
    ({"proj_dim": -3}, "routers.cool.options.proj_dim: -3 is less than the minimum of 1"),
    ({"proj_dim": 2.0}, "routers.cool.options.proj_dim: 2.0 is not of type 'integer'"),
    ({"temperature": True}, "routers.cool.options.temperature: True is not of type 'number'"),
    ({"temperature": "no"}, "routers.cool.options.temperature: 'no' is not of type 'number'"),
])
def test_a_plugins_declared_option_types_and_ranges_are_checked(options, message):
    with pytest.raises(values.ConfigError, match=re.escape(message)):
        cfg.validate({"routers": {"cool": {"method": "plugin", "target": "custom_router:CosineRouter",
                                           "options": options}}})


def test_a_size_beyond_any_machine_is_refused_before_anything_is_allocated():
    with pytest.raises(values.ConfigError, match=re.escape("routers.mpp.zero: 1000000000 is greater than the maximum")):
        cfg.validate({"routers": {"mpp": {"method": "moe_plus_plus", "zero": 1_000_000_000}}})
