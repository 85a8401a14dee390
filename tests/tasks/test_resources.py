import pytest

from tasks.resources import pattern_matches, resource_granted

TABLE = [
    # pattern, resource, matches
    ("repo:acme/api", "repo:acme/api", True),
    ("repo:acme/api", "repo:acme/api2", False),
    ("repo:acme/api", "repo:acme/API", False),
    ("repo:acme/*", "repo:acme/api", True),
    ("repo:acme/*", "repo:acme/", True),
    ("repo:acme/*", "repo:acme/api/x", False),
    ("repo:acme/*", "repo:other/api", False),
    ("repo:acme/*", "repo:acme", False),
    ("repo:acme/**", "repo:acme/api", True),
    ("repo:acme/**", "repo:acme/api/x/y", True),
    ("repo:acme/**", "repo:acmecorp/api", False),
    ("repo:*/api", "repo:acme/api", True),
    ("repo:*/api", "repo:acme/team/api", False),
    ("repo:**/api", "repo:acme/team/api", True),
    ("repo:acme/api-*", "repo:acme/api-v2", True),
    ("repo:acme/api-*", "repo:acme/web-v2", False),
    ("*", "anything", True),
    ("*", "a/b", False),
    ("**", "a/b", True),
    ("repo:acme/a.c", "repo:acme/abc", False),  # '.' is literal
    ("repo:acme/a?c", "repo:acme/abc", False),  # '?' is literal
    ("repo:acme/a?c", "repo:acme/a?c", True),
    ("repo:acme/[ab]", "repo:acme/a", False),  # brackets are literal
    ("s3:bucket/*.csv", "s3:bucket/x.csv", True),
    ("s3:bucket/*.csv", "s3:bucket/dir/x.csv", False),
    ("s3:bucket/*.csv", "s3:bucket/x.csv\n", False),
]


@pytest.mark.parametrize(("pattern", "resource", "expected"), TABLE)
def test_pattern_table(pattern, resource, expected):
    assert pattern_matches(pattern, resource) is expected


def test_a_resource_is_granted_when_any_pattern_matches():
    assert resource_granted(["repo:other/*", "repo:acme/*"], "repo:acme/api")
    assert not resource_granted(["repo:other/*"], "repo:acme/api")


def test_no_patterns_grant_nothing():
    assert not resource_granted([], "repo:acme/api")


# Risk by meaning: what a pattern can match, not how it is spelled. (pattern, unbounded)
BREADTH_TABLE = [
    ("*", True),  # every resource whose name has no "/"
    ("**", True),  # every resource
    ("*:*", True),
    ("*:**", True),
    ("**:**", True),
    ("***", True),
    ("*/**", True),
    ("repo:*", True),  # every top-level repo
    ("repo:**", True),  # every repo
    ("repo:*/*", True),
    ("repo:*/**", True),
    ("repo:**/*", True),
    ("prod:*", True),
    ("prod:**", True),
    ("r*:**", True),  # every resource of every type starting with r
    ("repo:acme/*", False),
    ("repo:acme/**", False),
    ("repo:*/api", False),
    ("repo:**/api", False),
    ("repo:acme-*", False),
    ("**x", False),
    ("*:readme", False),
    ("repo:acme/api", False),
    ("repo:", False),
    ("", False),
]


@pytest.mark.parametrize(("pattern", "unbounded"), BREADTH_TABLE)
def test_a_pattern_is_unbounded_by_what_it_can_match(pattern, unbounded):
    from tasks.resources import is_unbounded

    assert is_unbounded(pattern) is unbounded
