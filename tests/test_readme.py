"""The README's configuration example is a real configuration naming every setting."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import rtforge.config as config_module
from rtforge.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def _configuration_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration"):]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def test_the_configuration_example_loads_and_names_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_configuration_example(), encoding="utf-8")
    config = load_config(path)
    assert config.network.nodes["secure-pacs"].tls
    assert config.reslice.max_gap_factor == 3
    named = set(re.findall(r"^(\w+)\s*=", _configuration_example(), re.M))
    sections = {"export": config_module.ExportConfig, "network": config_module.NetworkConfig,
                "node": config_module.Node, "receive": config_module.ReceiveLimits,
                "archive": config_module.ArchiveConfig, "reslice": config_module.ResliceConfig,
                "serve": config_module.ServeConfig, "dask": config_module.DaskConfig}
    settings = {f.name for cls in sections.values() for f in dataclasses.fields(cls)}
    settings -= {"nodes", "receive"}  # tables, not keys
    assert settings - named == set(), "README's example lacks these settings"
    tables = {f.name for f in dataclasses.fields(config_module.Config)}
    assert all(f"[{t}]" in _configuration_example() for t in tables)
