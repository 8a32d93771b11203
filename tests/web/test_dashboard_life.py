"""Replies from the site and who may reply, on the dashboard (forms with CSRF, the real PDS):
the reply form's id is fixed when it is rendered, so a second submit posts nothing; bad input
is shown next to its field and changes nothing; the accounts page sets and shows the gates,
through the same path as `skypost account update --replies/--quotes`."""

from __future__ import annotations

import html
import re

from tests.web.test_delete_web import login


def csrf_of(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def reply_form(text: str) -> dict[str, str]:
    """The hidden fields of the reply form on a post's page."""
    form = text[text.index('id="reply-form"'):]
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form[:3000]))
    return {k: html.unescape(v) for k, v in fields.items()}


def published(web, make_account, proxy, post_id="life-1", **account):
    alice = make_account("life")
    web.app.add_account(alice.handle, alice.app_password, service=proxy.url, **account)
    web.app.submit({"id": post_id, "title": "A post to answer", "url": f"https://blog.example.com/{post_id}"})
    web.app.run_worker(burst=True)
    assert web.app.status(post_id)["status"] == "completed"
    login(web)
    return alice


def test_a_reply_from_the_form_is_posted_once_even_when_submitted_twice(sqlite_web, make_account, proxy, pds):
    web = sqlite_web
    alice = published(web, make_account, proxy)
    page = web.client.get("/posts/life-1")
    assert page.status_code == 200 and 'id="reply-form"' in page.text
    assert "<select" not in page.text  # one account: nothing to choose
    fields = reply_form(page.text)
    assert fields["reply_id"].startswith("dash-") and set(fields) == {"csrf", "reply_id"}
    # a new rendering is a new reply
    assert reply_form(web.client.get("/posts/life-1").text)["reply_id"] != fields["reply_id"]

    data = {**fields, "text": "Thanks for reading!"}
    first = web.client.post("/posts/life-1/replies", data=data)
    assert first.status_code == 303 and first.headers["location"] == "/posts/life-1#site-replies"
    again = web.client.post("/posts/life-1/replies", data={**data, "text": "Thanks for reading!!"})
    assert again.status_code == 303
    shown = web.client.get("/posts/life-1").text
    assert "it is not posted twice" in shown
    replies = web.app.replies("life-1")
    assert [r["id"] for r in replies] == [fields["reply_id"]]
    web.app.run_worker(burst=True)
    assert web.app.replies("life-1")[0]["status"] == "completed"
    posts = pds.list_posts(alice.did)
    assert len(posts) == 2
    texts = sorted(p["value"]["text"] for p in posts)
    assert "Thanks for reading!" in texts
    page = web.client.get("/posts/life-1").text
    block = page[page.index('id="site-replies"'):]
    assert f'data-reply-id="{fields["reply_id"]}" data-status="completed"' in block
    assert "https://bsky.app/profile/" in block and "Thanks for reading!" in block


def test_bad_replies_are_shown_next_to_the_field_and_change_nothing(sqlite_web, make_account, proxy, pds):
    web = sqlite_web
    published(web, make_account, proxy)
    fields = reply_form(web.client.get("/posts/life-1").text)
    empty = web.client.post("/posts/life-1/replies", data={**fields, "text": "   "})
    assert empty.status_code == 422
    assert 'id="reply-text-error"' in empty.text and "must not be empty" in empty.text
    # the form keeps its id (a corrected submit is the same reply)
    assert reply_form(empty.text)["reply_id"] == fields["reply_id"]
    bad_parent = web.client.post("/posts/life-1/replies",
                                 data={**fields, "text": "hi", "parent": "https://bsky.app/x"})
    assert bad_parent.status_code == 422 and "is not the AT-URI of a post" in bad_parent.text
    assert 'value="https://bsky.app/x"' in bad_parent.text
    stranger = web.client.post("/posts/life-1/replies", data={**fields, "text": "hi", "account": "bob.test"})
    assert stranger.status_code == 422 and "was not published to @bob.test" in stranger.text
    forged = web.client.post("/posts/life-1/replies", data={**fields, "csrf": "forged", "text": "hi"})
    assert forged.status_code == 403
    assert web.client.post("/posts/nope/replies", data={**fields, "text": "hi"}).status_code == 404
    assert web.app.replies("life-1") == []


def test_reply_link_prefills_the_parent(sqlite_web, make_account, proxy, pds):
    web = sqlite_web
    published(web, make_account, proxy)
    parent = "at://did:plc:someone/app.bsky.feed.post/3kabc"
    page = web.client.get("/posts/life-1", params={"parent": parent})
    fields = reply_form(page.text)
    assert fields["parent"] == parent and 'id="reply-parent"' in page.text


def test_accounts_page_sets_and_shows_who_may_reply(sqlite_web, make_account, proxy, pds):
    web = sqlite_web
    alice = published(web, make_account, proxy)
    page = web.client.get("/accounts")
    assert "replies: everyone; quotes on" in page.text
    csrf = csrf_of(page.text)
    url = f"/accounts/{alice.handle}/gates"
    none = web.client.post(url, data={"csrf": csrf, "who": "some", "quotes": "on"})
    assert none.status_code == 422 and "tick following, mentioned or both" in none.text
    assert web.app.accounts()[0]["replies"] == ["everyone"]
    r = web.client.post(url, data={"csrf": csrf, "who": "some", "rules": ["following", "mentioned"]})
    assert r.status_code == 303
    account = web.app.accounts()[0]
    assert account["replies"] == ["following", "mentioned"] and account["quotes"] is False
    page = web.client.get("/accounts").text
    assert "replies: following, mentioned; quotes off" in page
    # the next post carries the gate; the post page says so per delivery
    web.app.submit({"id": "life-2", "title": "Gated", "url": "https://blog.example.com/life-2"})
    web.app.run_worker(burst=True)
    post = web.client.get("/posts/life-2").text
    assert f"@{alice.handle}</span>: <span class=\"gate-words\">replies: following, mentioned; quotes off" in post
    rkey = web.app.status("life-2")["deliveries"][0]["uri"].rsplit("/", 1)[1]
    gate = pds.get_record(alice.did, "app.bsky.feed.threadgate", rkey)
    assert [a["$type"] for a in gate["value"]["allow"]] == [
        "app.bsky.feed.threadgate#followingRule", "app.bsky.feed.threadgate#mentionRule"]
    assert pds.get_record(alice.did, "app.bsky.feed.postgate", rkey) is not None
    # back to everyone, quotes on
    assert web.client.post(url, data={"csrf": csrf, "who": "everyone", "quotes": "on"}).status_code == 303
    assert web.app.accounts()[0]["replies"] == ["everyone"] and web.app.accounts()[0]["quotes"] is True


def test_an_account_added_with_a_gate(sqlite_web, make_account, proxy, pds):
    web = sqlite_web
    login(web)
    bob = make_account("gated")
    csrf = csrf_of(web.client.get("/accounts").text)
    r = web.client.post("/accounts", data={"csrf": csrf, "handle": bob.handle, "app_password": bob.app_password,
                                           "service": proxy.url, "who": "nobody"})
    assert r.status_code == 303, r.text
    account = web.app.accounts()[0]
    assert account["replies"] == ["nobody"] and account["quotes"] is False
