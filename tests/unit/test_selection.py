"""Guards, account selection and category rules (DESIGN rules 2 and 3)."""

from datetime import datetime, timezone

import pytest

from skypost.models import Account, Post, ValidationError
from skypost.syndicator import categories_allow, guard_reason, select_accounts


def acc(handle, auto=True, inc=(), exc=()):
    return Account(handle=handle, did=f"did:plc:{handle[:3]}", auto_syndicate=auto,
                   include_categories=tuple(inc), exclude_categories=tuple(exc), id=hash(handle) % 1000)


@pytest.mark.parametrize(
    ("inc", "exc", "cats", "allowed"),
    [
        ((), (), (), True),
        ((), (), ("news",), True),
        (("news",), (), ("news",), True),
        (("news",), (), ("NEWS",), True),
        (("news", "tech"), (), ("tech",), True),
        (("news",), (), ("sport",), False),
        ((), ("private",), ("private", "news"), False),
        (("news",), ("private",), ("news", "private"), False),  # an exclusion wins
        (("news",), (), (), False),  # rules set, no category
        ((), ("private",), (), False),
        ((), ("private",), ("news",), True),
    ],
)
def test_category_rules(inc, exc, cats, allowed):
    assert categories_allow(acc("a.test", inc=inc, exc=exc), cats) is allowed


def test_explicit_selection_beats_auto():
    accounts = [acc("a.test"), acc("b.test", auto=False)]
    chosen = select_accounts(Post(id="1", title="t", accounts=("b.test",)), accounts)
    assert [a.handle for a in chosen.accounts] == ["b.test"]


def test_auto_accounts_by_default():
    accounts = [acc("a.test"), acc("b.test", auto=False), acc("c.test")]
    chosen = select_accounts(Post(id="1", title="t"), accounts)
    assert [a.handle for a in chosen.accounts] == ["a.test", "c.test"]


def test_unknown_explicit_account_is_bad_input():
    with pytest.raises(ValidationError) as err:
        select_accounts(Post(id="1", title="t", accounts=("nobody.test",)), [acc("a.test")])
    assert "accounts" in err.value.errors


def test_no_account_left_gives_reason():
    sel = select_accounts(Post(id="1", title="t", categories=("x",)), [acc("a.test", inc=("y",))])
    assert sel.accounts == [] and "category" in sel.reason
    sel = select_accounts(Post(id="1", title="t"), [acc("a.test", auto=False)])
    assert sel.accounts == [] and "auto-syndicate" in sel.reason


def test_guards():
    cutoff = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert guard_reason(Post(id="1", dont_syndicate=True), cutoff=None, post_types=("post",))
    assert guard_reason(Post(id="1", post_type="page"), cutoff=None, post_types=("post",))
    old = Post(id="1", published_at=datetime(2025, 12, 31, tzinfo=timezone.utc))
    assert "activated" in guard_reason(old, cutoff=cutoff, post_types=("post",))
    new = Post(id="1", published_at=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert guard_reason(new, cutoff=cutoff, post_types=("post",)) is None
    assert guard_reason(Post(id="1"), cutoff=cutoff, post_types=("post",)) is None


def test_no_account_at_all_says_so_and_how_to_fix_it():
    selection = select_accounts(Post(id="1", title="T", url="https://blog.example.com/1"), [])
    assert selection.accounts == [] and selection.reason.startswith("no account configured")
    none_auto = select_accounts(Post(id="1", title="T", url="https://blog.example.com/1"), [acc("a.test", auto=False)])
    assert none_auto.reason == "no account selected: none is set to auto-syndicate"
