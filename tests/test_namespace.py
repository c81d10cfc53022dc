"""The public namespace: small, no function shadowing a module, one ``layer=`` convention, a public registry."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest
import torch
from torch import nn

import integrand
from integrand import InputError
from integrand.result import Attribution

F64 = torch.float64


def test_top_level_is_small_and_complete() -> None:
    assert len(integrand.__all__) <= 30
    assert len(set(integrand.__all__)) == len(integrand.__all__)
    for name in integrand.__all__:
        assert hasattr(integrand, name), name
    assert isinstance(integrand.__version__, str)


def test_no_function_shadows_a_module() -> None:
    import integrand.methods
    import integrand.recommend

    assert isinstance(integrand.methods, types.ModuleType)
    assert isinstance(integrand.recommend, types.ModuleType)
    assert "saliency" in integrand.methods.REGISTRY.names()
    assert callable(integrand.recommend.recommend)
    for sub in ("uncertainty", "concepts", "groups", "metrics", "quadrature", "circuits", "steering", "profiles"):
        assert isinstance(getattr(integrand, sub), types.ModuleType), sub
        assert importlib.import_module(f"integrand.{sub}") is getattr(integrand, sub)


def test_moved_names_warn_and_point_to_their_home() -> None:
    with pytest.warns(DeprecationWarning, match=r"integrand\.methods\.deeplift"):
        fn = integrand.deeplift  # type: ignore[attr-defined]
    assert fn is integrand.methods.deeplift
    with pytest.warns(DeprecationWarning, match=r"integrand\.uncertainty\.mc_dropout"):
        assert integrand.mc_dropout is integrand.uncertainty.mc_dropout  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="no_such_name"):
        integrand.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)


_LAYER_OPTIONS: dict[str, dict[str, object]] = {
    "smoothgrad": {"samples": 4, "seed": 0},
    "smoothgrad_sq": {"samples": 4, "seed": 0},
    "vargrad": {"samples": 4, "seed": 0},
    "gradient_shap": {"baselines": torch.zeros(3, 5, dtype=F64), "samples": 4, "seed": 0},
    "expected_gradients": {"baselines": torch.zeros(3, 5, dtype=F64), "samples": 4, "seed": 0},
    "lime": {"n_samples": 16, "seed": 0},
    "c_lime": {"n_samples": 16, "seed": 0},
    "kernel_shap": {"n_samples": None},
    "guided_ig": {"steps": 8},
    "blur_ig": {"steps": 8, "max_sigma": 1.0},
    "idgi": {"steps": 8},
    "integrated_gradients": {"steps": 8},
}
_NOT_AT_LAYER = {"blur_ig", "lrp"}  # blur_ig blurs an image; lrp takes layer= itself (token ids at embeddings)


@pytest.mark.filterwarnings("ignore::integrand.ConvergenceWarning")
@pytest.mark.parametrize("name", [n for n in integrand.methods.BUILT_IN if n not in _NOT_AT_LAYER])
def test_every_method_function_takes_layer_like_attribute(name: str) -> None:
    model, x = _mlp(), torch.randn(2, 4, dtype=F64)
    fn = getattr(integrand.methods, name)
    params = inspect.signature(fn).parameters
    for keyword in ("layer", "layer_side", "layer_output_index", "reuse"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY, (name, keyword)
    options = _LAYER_OPTIONS.get(name, {})
    direct = fn(model, x, 1, layer=model[1], **options)
    routed = integrand.attribute(model, x, 1, method=name, layer=model[1], **options)
    assert direct.values.shape == (2, 5)
    assert direct.method == routed.method and direct.params["layer"] == routed.params["layer"]
    torch.testing.assert_close(direct.values, routed.values)
    at_inputs = {k: torch.zeros(3, 4, dtype=F64) if k == "baselines" else v for k, v in options.items()}
    plain = fn(model, x, 1, **at_inputs)
    assert plain.values.shape == x.shape


def test_layer_only_options_need_a_layer() -> None:
    with pytest.raises(InputError, match="layer_side"):
        integrand.smoothgrad(_mlp(), torch.randn(1, 4, dtype=F64), 0, layer_side="input", samples=2)


def test_list_methods_reads_cleanly() -> None:
    infos = integrand.list_methods()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert "<function" not in repr(infos[0])


def _double(model: nn.Module, inputs: torch.Tensor, target: object = None, *, factor: float = 2.0) -> Attribution:
    base = integrand.saliency(model, inputs, target)
    return Attribution(
        values=base.values * factor,
        inputs=inputs,
        baseline=None,
        score_input=base.score_input,
        score_baseline=None,
        delta=None,
        steps=base.steps,
        converged=base.converged,
        method="double_saliency",
        params={"factor": factor},
    )


def test_register_method_as_function_and_decorator() -> None:
    model, x = _mlp(), torch.randn(2, 4, dtype=F64)
    try:
        assert integrand.register_method("double_saliency", _double) is _double
        assert "double_saliency" in {i.name for i in integrand.list_methods()}
        got = integrand.attribute(model, x, 0, method="double_saliency", factor=3.0)
        torch.testing.assert_close(got.values, 3.0 * integrand.saliency(model, x, 0).values)
        with pytest.raises(InputError, match="factr"):
            integrand.attribute(model, x, 0, method="double_saliency", factr=3.0)
        with pytest.raises(InputError, match="already registered"):
            integrand.register_method("double_saliency", _double)

        @integrand.register_method("constant_zero")
        def constant_zero(model: nn.Module, inputs: torch.Tensor, target: object = None) -> Attribution:
            return _double(model, inputs, target, factor=0.0)

        assert integrand.attribute(model, x, 0, method="constant_zero").values.abs().max() == 0
    finally:
        for name in ("double_saliency", "constant_zero"):
            if name in integrand.methods.REGISTRY.names():
                integrand.methods.unregister_method(name)
    assert "double_saliency" not in integrand.methods.REGISTRY.names()


def test_register_method_refuses_bad_methods() -> None:
    with pytest.raises(InputError, match="^name"):
        integrand.register_method("not a name", _double)
    with pytest.raises(InputError, match="^name"):
        integrand.register_method("saliency", _double)
    with pytest.raises(InputError, match="^fn"):
        integrand.register_method("two_args", lambda model, inputs: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match="^fn.*kwargs"):
        integrand.register_method("soup", lambda model, inputs, target, **kw: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match="^fn"):
        integrand.register_method("nothing", 3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="built-in"):
        integrand.methods.unregister_method("saliency")


def test_a_method_returning_no_attribution_is_named() -> None:
    def broken(model: nn.Module, inputs: torch.Tensor, target: object = None) -> Attribution:
        return "oops"  # type: ignore[return-value]

    integrand.register_method("broken_method", broken)
    try:
        with pytest.raises(InputError, match="broken_method.*str"):
            integrand.attribute(_mlp(), torch.randn(1, 4, dtype=F64), 0, method="broken_method")
    finally:
        integrand.methods.unregister_method("broken_method")


def _result_types() -> dict[str, type]:
    import pkgutil

    from integrand.errors import MissingExtraError
    from integrand.protocol import ResultMixin

    for info in pkgutil.walk_packages(integrand.__path__, "integrand."):
        try:
            importlib.import_module(info.name)
        except (ImportError, MissingExtraError):  # an optional extra that is not installed
            continue
    found: dict[str, type] = {}
    stack = list(ResultMixin.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("integrand.") and cls.__module__ != "integrand.protocol":  # not the mixins
            found[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return found


def test_every_result_type_is_storable_and_walked_by_the_protocol_test() -> None:
    from integrand.protocol import LOADERS, STORABLE, _format

    from .test_result_protocol import BUILDERS

    types_ = _result_types()
    assert len(types_) >= 20
    assert set(types_) <= STORABLE, sorted(set(types_) - STORABLE)
    walked = {name.split("[")[0].split(".")[-1] for name in BUILDERS}
    assert {cls.__name__ for cls in types_.values()} <= walked, sorted({c.__name__ for c in types_.values()} - walked)
    for name, cls in types_.items():
        assert LOADERS[_format(cls)] == name  # one file format per type, even where class names repeat


@pytest.mark.filterwarnings("ignore::integrand.ConvergenceWarning")
@pytest.mark.parametrize("name", [n for n in integrand.methods.BUILT_IN if n not in _NOT_AT_LAYER])
def test_every_method_records_what_it_explained(name: str) -> None:
    model, x = _mlp(), torch.randn(3, 4, dtype=F64)
    given = _LAYER_OPTIONS.get(name, {})
    options = {k: torch.zeros(3, 4, dtype=F64) if k == "baselines" else v for k, v in given.items()}
    result = getattr(integrand.methods, name)(model, x, torch.tensor([0, 1, 0]), **options)
    assert result.params["method"] == name and result.params["target_index"] == [0, 1, 0]
    signature = inspect.signature(integrand.methods.REGISTRY.get(name).fn)
    takes_baseline = {"baseline", "baselines"} & set(signature.parameters)
    assert ("baseline" in result.params) == bool(takes_baseline), result.params
    if "baselines" in takes_baseline:
        assert result.params["baseline"] == "tensor"
    elif takes_baseline:
        assert result.params["baseline"] == "zeros"
