"""Nodes: the [network] configuration section and NAME / AET@HOST:PORT on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtforge.config import Config, NetworkConfig, Node, load_config
from rtforge.errors import InvalidInputError
from rtforge.net import resolve_node

CONFIG = """
[export]
platform_name = "RTFORGE-01"

[network]
ae_title = "PLANNING1"
port = 11113

[network.nodes.pacs]
ae_title = "ORTHANC"
host = "pacs.example.org"
port = 4242

[network.nodes.tps]
ae_title = "TPS"
host = "10.0.0.7"
port = 104
timeout = 5
max_pdu = 65536
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_network_section_is_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, CONFIG))
    assert config.network.ae_title == "PLANNING1"
    assert config.network.port == 11113
    assert config.network.nodes["pacs"] == Node("ORTHANC", "pacs.example.org", 4242, 30.0, 28672)
    assert config.network.nodes["tps"].timeout == 5.0
    assert config.network.nodes["tps"].max_pdu == 65536
    assert config.export.platform_name == "RTFORGE-01"


def test_defaults_without_a_network_section(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "[export]\n"))
    assert config.network == NetworkConfig()
    assert config.network.ae_title == "RTFORGE" and config.network.port == 11112
    assert Config().network.nodes == {}


@pytest.mark.parametrize(("text", "words"), [
    ("[network]\naet = 'X'\n", "unknown setting(s) in [network]: aet"),
    ("[network.nodes.a]\nae_title = 'A'\nport = 104\n", "missing setting(s) in [network.nodes.a]: host"),
    ("[network.nodes.a]\nae_title = 'A'\nhost = 'h'\nport = 104\ncolour = 1\n",
     "unknown setting(s) in [network.nodes.a]: colour"),
    ("[network.nodes.a]\nae_title = 'A'\nhost = 'h'\nport = 70000\n", "port"),
    ("[network.nodes.a]\nae_title = 'WAY_TOO_LONG_TITLE'\nhost = 'h'\nport = 1\n", "1 to 16"),
    ("[network.nodes.a]\nae_title = 'A\\\\B'\nhost = 'h'\nport = 1\n", "backslash"),
    ("[network.nodes.a]\nae_title = 'A'\nhost = 'h'\nport = 1\ntimeout = 0\n", "timeout"),
    ("[network.nodes.a]\nae_title = 'A'\nhost = 'h'\nport = 1\nmax_pdu = 100\n", "max_pdu"),
    ("[network.nodes.'a b']\nae_title = 'A'\nhost = 'h'\nport = 1\n", "node name"),
    ("[network]\nnodes = 3\n", "table"),
])
def test_invalid_network_settings_are_rejected(tmp_path: Path, text: str, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(InvalidInputError) as info:
        load_config(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_node_by_name_and_by_address(tmp_path: Path) -> None:
    network = load_config(_write(tmp_path, CONFIG)).network
    assert resolve_node("pacs", network).ae_title == "ORTHANC"
    node = resolve_node("STORESCP@127.0.0.1:11112", network)
    assert node == Node("STORESCP", "127.0.0.1", 11112)
    assert (node.timeout, node.max_pdu) == (30.0, 28672)
    assert str(node) == "STORESCP@127.0.0.1:11112"
    v6 = resolve_node("ARCHIVE@[::1]:104")
    assert v6.host == "::1" and str(v6) == "ARCHIVE@[::1]:104"


def test_flags_override_the_node(tmp_path: Path) -> None:
    network = load_config(_write(tmp_path, CONFIG)).network
    node = resolve_node("tps", network, timeout=2.5, max_pdu=16384)
    assert (node.ae_title, node.timeout, node.max_pdu) == ("TPS", 2.5, 16384)


@pytest.mark.parametrize("text", ["nowhere", "AET@host", "AET@host:port", "@host:104",
                                  "TOO_LONG_AE_TITLE_X@h:104", "A@h:0"])
def test_unknown_or_malformed_nodes(text: str) -> None:
    with pytest.raises(InvalidInputError):
        resolve_node(text, NetworkConfig())
