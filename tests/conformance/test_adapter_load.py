"""implementations.load: every bad adapter declaration is an AdapterLoadError naming the
spec, the field and the value (issue 8 item 6), every failure to load one too (issue 9 item 9)."""

import itertools

import pytest

import implementations
from implementations import AdapterLoadError
from tests.adapters import UNLOADABLE

GOOD = """
class Adapter:
    name = "good"
    devices = ("cpu",)
    dtypes = ("float64", "float32")

    def skip_reason(self, device):
        return None

    def yolo(self, case, device, dtype):
        return {}
"""
_NAMES = itertools.count()


def load_module(tmp_path, monkeypatch, source: str, attr: str = "adapter"):
    """implementations.load on a fresh module holding ``source``."""
    name = f"plugin_load_{next(_NAMES)}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return implementations.load(f"{name}:{attr}"), f"{name}:{attr}"


FIELDS = {
    "name": "'good'",
    "devices": "('cpu',)",
    "dtypes": "('float64', 'float32')",
    "skip_reason": "lambda self, device: None",
    "yolo": "lambda self, case, device, dtype: {}",
}


def declared(**fields) -> str:
    """An adapter module whose class attributes are FIELDS with ``fields`` replacing them
    (None: left out)."""
    body = "".join(f"\n    {k} = {v}" for k, v in {**FIELDS, **fields}.items() if v is not None)
    return f"class Changed:{body}\n\nadapter = Changed()\n"


def test_good_adapter_loads_and_a_class_is_instantiated(tmp_path, monkeypatch):
    adapter, _ = load_module(tmp_path, monkeypatch, GOOD + "\nadapter = Adapter()\n")
    assert adapter.name == "good"
    adapter, _ = load_module(tmp_path, monkeypatch, GOOD, "Adapter")
    assert not isinstance(adapter, type) and adapter.skip_reason("cpu") is None


BAD = [
    (dict(name="''"), "name = '': expected a non-empty str"),
    (dict(name="3"), "name = 3: expected a non-empty str"),
    (dict(devices="'cpu'"), "devices = 'cpu': expected a non-empty sequence of str"),
    (dict(devices="()"), "devices = (): expected a non-empty sequence of str"),
    (dict(devices="None"), "devices = None: expected a non-empty sequence of str"),
    (dict(devices="('cpu', 0)"), "devices = ('cpu', 0): 0 is not a non-empty str"),
    (dict(dtypes="()"), "dtypes = (): expected a non-empty sequence of str"),
    (dict(dtypes="'float32'"), "dtypes = 'float32': expected a non-empty sequence of str"),
    (dict(dtypes="('float8',)"), "dtypes = ('float8',): 'float8' is not one of float64, float32, float16, bfloat16"),
    (dict(dtypes="['float32', 'flaot64']"), "dtypes = ['float32', 'flaot64']: 'flaot64' is not one of"),
    (dict(skip_reason="None"), "skip_reason = None: expected a method"),
    (dict(skip_reason="'cpu'"), "skip_reason = 'cpu': expected a method"),
    (dict(yolo="1"), "yolo = 1: expected a method"),
    (dict(ssd="'ssd'"), "ssd = 'ssd': expected a method"),
    (dict(devices=None), "the adapter lacks devices"),
    (dict(yolo=None), "the adapter has neither yolo() nor ssd()"),
]


@pytest.mark.parametrize(
    "fields,message", BAD, ids=[m.split(":")[0].split(" ")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)]
)
def test_bad_declaration(tmp_path, monkeypatch, fields, message):
    with pytest.raises(AdapterLoadError) as info:
        load_module(tmp_path, monkeypatch, declared(**fields))
    text = str(info.value)
    assert text.startswith("--impl 'plugin_load_") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize("source,message", [u[1:] for u in UNLOADABLE], ids=[u[0] for u in UNLOADABLE])
def test_failure_to_load(tmp_path, monkeypatch, source, message):
    with pytest.raises(AdapterLoadError) as info:
        load_module(tmp_path, monkeypatch, source)
    module = str(info.value).split("'")[1].split(":")[0]
    assert module.startswith("plugin_load_") and message.format(module=module) in str(info.value), str(info.value)


@pytest.mark.parametrize("spec", ["no_colon", ":adapter", "module:", ""])
def test_malformed_spec(spec):
    with pytest.raises(AdapterLoadError, match="expected 'package.module:attr'"):
        implementations.load(spec)


def test_bundled_adapters_pass_validation():
    for spec in implementations.BUNDLED:
        implementations.load(spec)
