"""The full local network itself: what the conversation and lifecycle tests stand on."""

from __future__ import annotations

from tests.support.network import LocalNetwork


def test_the_appview_indexes_what_people_do_and_notifies_the_author(network: LocalNetwork) -> None:
    author, fan = network.create_account("author"), network.create_account("fan")
    post = network.post(author, "hello network")
    reply = network.post(fan, "hi back", reply_to=post)
    like = network.like(fan, post)

    def notified() -> dict[str, str]:
        page = network.pds("app.bsky.notification.listNotifications", token=author.token)
        found = {n["reason"]: n["uri"] for n in page["notifications"] if n["reason"] in ("reply", "like")}
        return found if len(found) == 2 else {}

    # a loaded machine (a whole test run beside it) can take its time indexing
    reasons = network.wait_for(notified, timeout=60)
    assert reasons == {"reply": reply["uri"], "like": like["uri"]}
    thread = network.wait_for(lambda: (t := network.thread(post["uri"]))["post"]["likeCount"] and t)
    assert [r["post"]["uri"] for r in thread["replies"]] == [reply["uri"]]
    assert thread["post"]["likeCount"] == 1
