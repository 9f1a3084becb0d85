"""configs/streams.toml loads; every kind of bad config is refused with a clear message."""

from __future__ import annotations

import pytest

from privmon.streams.config import DEFAULT_PATH, ConfigError, load_config

SHIPPED = DEFAULT_PATH.read_text()


def _load_with(tmp_path, old: str, new: str):
    assert old in SHIPPED, old
    path = tmp_path / "streams.toml"
    path.write_text(SHIPPED.replace(old, new, 1))
    (tmp_path / "inventory.toml").write_text((DEFAULT_PATH.parent / "inventory.toml").read_text())
    return load_config(path)


def test_shipped_config_is_valid_and_within_its_caps():
    config = load_config()
    assert [p.name for p in config.policies] == ["monitoring", "research", "capacity"]
    monitoring = config.policy("monitoring")
    assert monitoring.window_ms == 60_000 and monitoring.dimensions == ("server", "region")
    assert config.policy("research").budget.mechanism.value == "gaussian"
    assert config.topics.aggregate("capacity") == "aggregates.capacity"


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("epsilon = 0.5\n", "epsilon = -0.5\n",
         ["streams.monitoring.budget", "PrivacyBudget.epsilon = -0.5", "expected > 0"]),
        ("max_cells = 2 ", "max_cell = 2 ",
         ["streams.monitoring.bounds", "missing ['max_cells']"]),
        ('kind = "boolean"', 'kind = "bool"',
         ["streams.monitoring.metrics[1].kind = 'bool'", "'value', 'boolean' or 'histogram'"]),
        ("k = 20\n", "k = 20\nwindow_s = 60\n", ["unknown key(s) ['window_s']"]),
        ("max_windows = 120", "max_windows = 1000",
         ["monitoring", "{'monitoring': 1000} windows", "cap is epsilon<=12",
          "Lower the per-window"]),
        ("k = 20\n", "k = 1\n", ["streams.monitoring", "k = 1", "expected an integer >= 2"]),
        ("upper = 5000\n", "upper = -5\n", ["ValueMetric('latency').upper = -5"]),
        ('mechanism = "gaussian"', 'mechanism = "gaussian"\nrho = 0.1',
         ["not valid TOML", "Cannot overwrite a value (at line"]),
    ],
)
def test_bad_config_is_refused_naming_field_value_and_fix(tmp_path, old, new, fragments):
    with pytest.raises(ConfigError) as info:
        _load_with(tmp_path, old, new)
    message = str(info.value)
    assert str(tmp_path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="not found; pass --config"):
        load_config(tmp_path / "nope.toml")


def test_derive_budgets_scales_every_budget_to_the_caps(tmp_path):
    from privmon.privacy.accountant import within_caps

    shipped = load_config()
    app = 'app_id = "privmon"'
    derived = _load_with(tmp_path, app, f"derive_budgets = true\n{app}")
    factor = (derived.policy("monitoring").budget.epsilon
              / shipped.policy("monitoring").budget.epsilon)
    assert factor > 1
    for a, b in zip(shipped.policies, derived.policies, strict=True):
        assert b.budget.epsilon == pytest.approx(a.budget.epsilon * factor)
        assert dict(b.budget.shares) == dict(a.budget.shares)
    assert within_caps(derived.policies, derived.global_caps)
    with pytest.raises(ConfigError, match="derive_budgets = 'yes': expected true or false"):
        _load_with(tmp_path, 'app_id = "privmon"', 'derive_budgets = "yes"\napp_id = "privmon"')
