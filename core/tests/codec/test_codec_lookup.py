"""Codecs by content type: the wiring's (every registered codec) and the built-in conveniences."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from micro.codec import BUILTIN, Codec, Codecs, clear_cache, codec_for, default_codec, default_content_type
from micro.codec.json import JSONCodec
from micro.errors import BadRequest, CodecError, PluginConflict
from micro.hookspecs import hookimpl
from micro.plugins import PluginManager


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginManager]:
    """A private plugin manager with the defaults only, so registrations do not leak."""
    monkeypatch.delenv("MICRO_CODEC", raising=False)
    clear_cache()
    yield PluginManager(entry_points=False)
    clear_cache()


class YAMLishCodec(JSONCodec):
    content_type: ClassVar[str] = "application/x-test-yamlish"


class Clash(JSONCodec):
    content_type: ClassVar[str] = "application/msgpack"


def register(manager: PluginManager, name: str, factory: Any) -> None:
    class Plugin:
        @hookimpl
        def micro_register_codec(self, register: Any) -> None:
            register(name, factory)

    manager.register(Plugin(), f"test-{name}")


def test_unknown_content_type_is_a_codec_error_naming_it(manager: PluginManager) -> None:
    with pytest.raises(CodecError) as info:
        manager.codecs({}).get("application/x-unknown")
    assert isinstance(info.value, BadRequest)
    assert "'application/x-unknown'" in str(info.value)
    assert "application/json" in str(info.value)  # lists what is installed


def test_aliases_and_parameters(manager: PluginManager) -> None:
    for codecs in (manager.codecs({}).get, codec_for):
        msgpack = codecs("application/msgpack")
        assert codecs("application/x-msgpack") is msgpack
        assert codecs(" Application/MsgPack ; q=1") is msgpack


def test_default_is_json_unless_micro_codec_says_otherwise(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_content_type() == "application/json"
    assert codec_for(None) is default_codec() is codec_for("")
    monkeypatch.setenv("MICRO_CODEC", "msgpack")
    assert default_content_type() == "application/msgpack"
    assert default_codec() is codec_for("application/msgpack")
    monkeypatch.setenv("MICRO_CODEC", "nope")
    with pytest.raises(Exception, match="no codec named 'nope'"):
        default_codec()


def test_the_wiring_reads_micro_codec_from_its_own_environ_only(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICRO_CODEC", "bogus")
    codecs = manager.codecs({"MICRO_CODEC": "msgpack"})
    assert codecs.default().content_type == "application/msgpack"
    assert codecs.get(None) is codecs.get("application/msgpack")
    assert manager.codecs({}).default_content_type == "application/json"
    with pytest.raises(Exception, match=r"no codec named 'nope' \(from MICRO_CODEC\)"):
        manager.codecs({"MICRO_CODEC": "nope"})  # checked when wired, not on the first call


def test_the_builtin_table_is_what_the_core_registers(manager: PluginManager) -> None:
    registered = {p.name: p.factory for p in manager.providers("codec")}
    assert registered == dict(BUILTIN)
    assert type(Codecs().default()) is JSONCodec  # and the built-in table needs no plugin manager


def test_a_plugin_codec_is_found_by_content_type(manager: PluginManager) -> None:
    register(manager, "yamlish", YAMLishCodec)
    codec = manager.codecs({}).get("application/x-test-yamlish")
    assert isinstance(codec, YAMLishCodec)
    assert codec.name == "yamlish"


def test_two_codecs_claiming_one_content_type_conflict(manager: PluginManager) -> None:
    register(manager, "clash", Clash)
    with pytest.raises(PluginConflict, match=r"'clash'.*'msgpack'|'msgpack'.*'clash'"):
        manager.codecs({}).get("application/msgpack")


def test_a_broken_plugin_does_not_hide_the_others(manager: PluginManager) -> None:
    register(manager, "broken", "micro_no_such_module:Codec")
    codecs = manager.codecs({})
    assert codecs.get("application/json").name == "json"
    with pytest.raises(CodecError, match=r"not loaded: .*broken"):
        codecs.get("application/x-unknown")


def test_codecs_are_components(manager: PluginManager) -> None:
    codec = codec_for("application/json")
    assert isinstance(codec, Codec)
    assert repr(codec) == "<JSONCodec application/json>"
