"""Go Micro's ``auth.Verify``: which rule decides whether an account may access a resource."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import Forbidden, Unauthorized
from .values import SCOPE_ACCOUNT, SCOPE_PUBLIC, Access, Account, Resource, Rule

__all__ = ["verify"]


def _endpoints(endpoint: str) -> set[str]:
    # A web path also matches every "<ancestor>/*" rule: /foo/bar gives /*, /foo/* and /foo/bar/*.
    valid = {"*", endpoint.lower()}
    parts = endpoint.lower().split("/")
    if len(parts) > 1:
        for i in range(1, len(parts) + 1):
            valid.add("/".join(parts[:i]) + "/*")
    return valid


def verify(rules: Iterable[Rule], account: Account | None, resource: Resource) -> None:
    """Return if ``account`` may access ``resource`` under ``rules``, else raise.

    The decision is Go Micro's ``auth.Verify`` (``auth/rules.go``), case for case:

    1. keep the rules whose resource type, name and endpoint each equal the
       resource's or are ``"*"`` (an endpoint may also be a path prefix ending
       in ``/*``), ignoring case;
    2. sort them by priority, highest first, keeping the given order on ties;
    3. the first rule that applies decides, granting or denying: a public rule
       (scope ``""``) applies to everyone, ``"*"`` to any account, another scope
       to an account holding it (ignoring case); without an account only public
       rules apply.

    Which error: Go Micro returns ``ErrForbidden`` for every refusal and its
    server wrapper turns that into a 401 when there was no account. Here the
    distinction is made once, in this function:

    * :class:`~micro.errors.Forbidden` when a rule denies, when an account was
      given but no rule grants it, and when there are no rules at all;
    * :class:`~micro.errors.Unauthorized` when no account was given and no
      public rule decided (an account might be let in).
    """
    rules = list(rules)
    if not rules:
        raise Forbidden(f"no rules allow access to {_describe(resource)}")
    matching = matches(rules, resource)
    # sorted() is stable, as Go's sort.SliceStable.
    matching.sort(key=lambda rule: rule.priority, reverse=True)
    scopes = {scope.lower() for scope in account.scopes} if account is not None else set()
    for rule in matching:
        if rule.scope == SCOPE_PUBLIC:
            applies = True
        elif account is None:
            continue
        else:
            applies = rule.scope == SCOPE_ACCOUNT or rule.scope.lower() in scopes
        if not applies:
            continue
        if rule.access is Access.DENIED:
            raise Forbidden(f"access to {_describe(resource)} is denied by rule {rule.id!r}")
        return
    if account is None:
        raise Unauthorized(f"access to {_describe(resource)} requires an account")
    raise Forbidden(f"account {account.id!r} may not access {_describe(resource)}")


def matches(rules: Iterable[Rule], resource: Resource) -> list[Rule]:
    """The rules whose resource covers ``resource`` (step 1 of :func:`verify`), in the given order."""
    types = {"*", resource.type.lower()}
    names = {"*", resource.name.lower()}
    endpoints = _endpoints(resource.endpoint)
    return [
        rule
        for rule in rules
        if rule.resource.type.lower() in types
        and rule.resource.name.lower() in names
        and rule.resource.endpoint.lower() in endpoints
    ]


def _describe(resource: Resource) -> str:
    return f"{resource.type} {resource.name}:{resource.endpoint}"
