"""The full local network itself: what the conversation and lifecycle tests stand on."""

from __future__ import annotations

from tests.support.network import LocalNetwork


def test_the_appview_indexes_what_people_do_and_notifies_the_author(network: LocalNetwork) -> None:
    author, fan = network.create_account("author"), network.create_account("fan")
    post = network.post(author, "hello network")
    # a reply indexed before the post it answers makes no notification (the AppView does not
    # know whom to tell yet; skypost's backfeed finds such replies in the thread instead)
    network.wait_for(lambda: network.appview("app.bsky.feed.getPosts", uris=[post["uri"]])["posts"])
    reply = network.post(fan, "hi back", reply_to=post)
    like = network.like(fan, post)

    # the records first (the thread view), then the notifications they make
    thread = network.wait_for(lambda: (t := network.thread(post["uri"]))["post"]["likeCount"]
                              and t.get("replies") and t, timeout=60)
    assert [r["post"]["uri"] for r in thread["replies"]] == [reply["uri"]]
    assert thread["post"]["likeCount"] == 1
    pages: list[object] = []

    def notified() -> dict[str, str]:
        page = network.pds("app.bsky.notification.listNotifications", token=author.token)
        pages[:] = [page]
        found = {n["reason"]: n["uri"] for n in page["notifications"] if n["reason"] in ("reply", "like")}
        return found if len(found) == 2 else {}

    # a loaded machine can take its time; the last page read says what was there if not
    try:
        reasons = network.wait_for(notified, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last listNotifications page: {pages}") from None
    assert reasons == {"reply": reply["uri"], "like": like["uri"]}
