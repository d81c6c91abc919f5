"""micro.auth.rules.verify against Go Micro's auth/rules_test.go TestVerify table, case for case."""

from __future__ import annotations

import pytest
from micro.auth import SCOPE_ACCOUNT, SCOPE_PUBLIC, Access, Account, Resource, Rule, verify
from micro.errors import Forbidden, Unauthorized

SRV = Resource(type="service", name="go.micro.service.foo", endpoint="Foo.Bar")
WEB = Resource(type="service", name="go.micro.web.foo", endpoint="/foo/bar")
CATCHALL = Resource(type="*", name="*", endpoint="*")


def rule(scope: str, resource: Resource, access: Access = Access.GRANTED, priority: int = 0) -> Rule:
    return Rule(id=f"{scope}:{resource.name}:{resource.endpoint}:{access.value}:{priority}", **locals())


# (name, rules, account, resource, error): rows in the order of go-micro's table. Go returns ErrForbidden for
# every refusal; where it has no account, micro raises Unauthorized instead (what Go's server wrapper sends),
# except when there are no rules at all.
GO_TABLE = [
    ("NoRules", [], None, SRV, Forbidden),
    ("CatchallPublicAccount", [rule(SCOPE_PUBLIC, CATCHALL)], Account(""), SRV, None),
    ("CatchallPublicNoAccount", [rule(SCOPE_PUBLIC, CATCHALL)], None, SRV, None),
    ("CatchallPrivateAccount", [rule(SCOPE_ACCOUNT, CATCHALL)], Account(""), SRV, None),
    ("CatchallPrivateNoAccount", [rule(SCOPE_ACCOUNT, CATCHALL)], None, SRV, Unauthorized),
    (
        "CatchallServiceRuleMatch",
        [rule(SCOPE_ACCOUNT, Resource(type=SRV.type, name=SRV.name, endpoint="*"))],
        Account(""),
        SRV,
        None,
    ),
    (
        "CatchallServiceRuleNoMatch",
        [rule(SCOPE_ACCOUNT, Resource(type=SRV.type, name="wrongname", endpoint="*"))],
        Account(""),
        SRV,
        Forbidden,
    ),
    ("ExactRuleValidScope", [rule("neededscope", SRV)], Account("", scopes=["neededscope"]), SRV, None),
    ("ExactRuleInvalidScope", [rule("invalidscope", SRV)], Account("", scopes=["neededscope"]), SRV, Forbidden),
    ("CatchallDenyWithAccount", [rule(SCOPE_ACCOUNT, CATCHALL, Access.DENIED)], Account(""), SRV, Forbidden),
    # Go's case of this name passes an (empty) account too.
    ("CatchallDenyWithNoAccount", [rule(SCOPE_ACCOUNT, CATCHALL, Access.DENIED)], Account(""), SRV, Forbidden),
    (
        "RulePriorityGrantFirst",
        [rule(SCOPE_ACCOUNT, CATCHALL, Access.GRANTED, 1), rule(SCOPE_ACCOUNT, CATCHALL, Access.DENIED, 0)],
        Account(""),
        SRV,
        None,
    ),
    (
        "RulePriorityDenyFirst",
        [rule(SCOPE_ACCOUNT, CATCHALL, Access.GRANTED, 0), rule(SCOPE_ACCOUNT, CATCHALL, Access.DENIED, 1)],
        Account(""),
        SRV,
        Forbidden,
    ),
    ("WebExactEndpointValid", [rule(SCOPE_ACCOUNT, WEB)], Account(""), WEB, None),
    (
        "WebExactEndpointInalid",
        [rule(SCOPE_ACCOUNT, Resource(type=WEB.type, name=WEB.name, endpoint="invalidendpoint"))],
        Account(""),
        WEB,
        Forbidden,
    ),
    (
        "WebWildcardEndpoint",
        [rule(SCOPE_ACCOUNT, Resource(type=WEB.type, name=WEB.name, endpoint="*"))],
        Account(""),
        WEB,
        None,
    ),
    (
        "WebWildcardPathEndpointValid",
        [rule(SCOPE_ACCOUNT, Resource(type=WEB.type, name=WEB.name, endpoint="/foo/*"))],
        Account(""),
        WEB,
        None,
    ),
    (
        "WebWildcardPathEndpointInvalid",
        [rule(SCOPE_ACCOUNT, Resource(type=WEB.type, name=WEB.name, endpoint="/bar/*"))],
        Account(""),
        WEB,
        Forbidden,
    ),
]


def test_the_table_has_go_micros_18_cases():
    assert len(GO_TABLE) == 18
    assert len({row[0] for row in GO_TABLE}) == 18


@pytest.mark.parametrize(
    ("rules", "account", "resource", "error"), [row[1:] for row in GO_TABLE], ids=[row[0] for row in GO_TABLE]
)
def test_go_micro_verify_table(rules, account, resource, error):
    if error is None:
        verify(rules, account, resource)
    else:
        with pytest.raises(error) as info:
            verify(rules, account, resource)
        assert type(info.value) is error  # Unauthorized and Forbidden are siblings: neither passes for the other


def test_public_deny_refuses_everyone_with_forbidden():
    rules = [rule(SCOPE_PUBLIC, CATCHALL, Access.DENIED)]
    with pytest.raises(Forbidden):
        verify(rules, None, SRV)
    with pytest.raises(Forbidden):
        verify(rules, Account("a"), SRV)


def test_anonymous_caller_and_rules_for_other_resources_is_unauthorized():
    with pytest.raises(Unauthorized, match="requires an account"):
        verify([rule(SCOPE_ACCOUNT, Resource("other", "service", "*"))], None, SRV)


def test_matching_ignores_case_and_web_paths_match_every_ancestor():
    verify([rule("Admin", Resource("GO.MICRO.SERVICE.FOO", "SERVICE", "foo.bar"))], Account("a", scopes=["admin"]), SRV)
    deep = Resource("web", "service", "/a/b/c")
    for endpoint in ("/*", "/a/*", "/a/b/*", "/a/b/c", "/a/b/c/*"):
        verify([rule(SCOPE_PUBLIC, Resource("web", "service", endpoint))], None, deep)
    with pytest.raises(Unauthorized):
        verify([rule(SCOPE_PUBLIC, Resource("web", "service", "/a/c/*"))], None, deep)


def test_equal_priorities_keep_the_given_order_and_skipped_rules_do_not_decide():
    granted, denied = rule(SCOPE_ACCOUNT, CATCHALL), rule(SCOPE_ACCOUNT, CATCHALL, Access.DENIED)
    verify([granted, denied], Account("a"), SRV)
    with pytest.raises(Forbidden, match="denied by rule"):
        verify([denied, granted], Account("a"), SRV)
    # A higher-priority rule for a scope the account lacks is skipped, not a refusal.
    verify([rule("admin", CATCHALL, Access.DENIED, 9), granted], Account("a", scopes=["user"]), SRV)
    with pytest.raises(Forbidden, match="'a' may not access"):
        verify([rule("admin", CATCHALL)], Account("a", scopes=["user"]), SRV)
