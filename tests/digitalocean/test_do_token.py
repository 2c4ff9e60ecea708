"""Token discovery (env, doctl's config, prompt) and the Token wrapper."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from wizard.token import (
    RedactingFilter, Token, TokenNotFound, find_token, read_doctl_token, redact, token_getter,
)

SECRET = "dop_v1_" + "ab" * 32


def test_env_wins_over_doctl_and_prompt(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("access-token: from-doctl\n")
    t = find_token(env={"DIGITALOCEAN_ACCESS_TOKEN": SECRET}, config_paths=[cfg], prompt=lambda: "typed")
    assert t.reveal() == SECRET and t.source == "env"


def test_doctl_config_then_prompt(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("# doctl\naccess-token: 'from-doctl'\noutput: text\n")
    assert find_token(env={}, config_paths=[cfg], prompt=lambda: "typed").reveal() == "from-doctl"
    assert find_token(env={}, config_paths=[tmp_path / "missing.yaml"], prompt=lambda: " typed \n").source == "prompt"


def test_doctl_named_context(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("access-token: default-one\nauth-contexts:\n  work: work-one\n  home: home-one\ncontext: work\n")
    assert read_doctl_token(cfg) == "work-one"
    cfg.write_text("access-token: default-one\nauth-contexts:\n  work: work-one\ncontext: default\n")
    assert read_doctl_token(cfg) == "default-one"


def test_doctl_config_under_home(tmp_path):
    (tmp_path / ".config" / "doctl").mkdir(parents=True)
    (tmp_path / ".config" / "doctl" / "config.yaml").write_text("access-token: home-token\n")
    assert find_token(env={"HOME": str(tmp_path)}).reveal() == "home-token"


def test_nothing_found_is_one_line(tmp_path):
    with pytest.raises(TokenNotFound) as e:
        find_token(env={"HOME": str(tmp_path)}, prompt=lambda: "")
    assert "\n" not in str(e.value) and "DIGITALOCEAN_ACCESS_TOKEN" in str(e.value)


def test_getter_asks_once():
    calls = []

    def prompt():
        calls.append(1)
        return SECRET

    get = token_getter(env={}, prompt=prompt)
    assert get() is get() and len(calls) == 1


def test_token_never_shows_itself():
    t = Token(SECRET, "env")
    for text in (repr(t), str(t), f"{t}", f"{t!r}", "%s" % t, repr([t]), repr({"t": t})):
        assert SECRET not in text
    with pytest.raises(TypeError):
        pickle.dumps(t)
    with pytest.raises(TypeError):
        copy.deepcopy(t)


def test_redact_and_filter(caplog):
    assert redact(f"Bearer {SECRET} x", Token(SECRET)) == "Bearer [REDACTED] x"
    log = logging.getLogger("rw.test.redact")
    log.addFilter(RedactingFilter(SECRET))
    with caplog.at_level(logging.DEBUG, logger="rw.test.redact"):
        log.warning("header %s", f"Authorization: Bearer {SECRET}")
    assert SECRET not in caplog.text and "[REDACTED]" in caplog.text
