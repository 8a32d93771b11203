"""Replies and reply rules over the HTTP API, on the full network (SQLite and PostgreSQL)."""

from __future__ import annotations


def test_api_replies(web, network):
    alice = network.create_account("apireply")
    assert web.post("/api/v1/accounts", json={"handle": alice.handle, "app_password": alice.app_password,
                                              "service": network.pds_url, "replies": ["nobody", "x"]}
                    ).json()["errors"].keys() == {"replies"}
    r = web.post("/api/v1/accounts", json={"handle": alice.handle, "app_password": alice.app_password,
                                           "service": network.pds_url, "quotes": False})
    assert r.status_code == 201 and r.json()["quotes"] is False
    assert web.post("/api/v1/posts", json={"id": "7", "title": "T", "url": "https://blog.example.com/7",
                                           "replies": ["sometimes"]}).status_code == 422
    assert web.post("/api/v1/posts", json={"id": "7", "title": "T", "url": "https://blog.example.com/7",
                                           "replies": ["following"]}).status_code == 202
    assert web.post("/api/v1/posts/nope/replies", json={"id": "c1", "text": "hi"}).status_code == 404
    assert web.get("/api/v1/posts/nope/replies").status_code == 404
    for body, field in (({"text": "hi"}, "id"), ({"id": "c1"}, "text"), ({"id": "c1", "text": ""}, "text"),
                        ({"id": "c1", "text": "hi", "colour": 1}, "colour"),
                        ({"id": "c1", "text": "hi", "parent": "at://x"}, "parent"),
                        ({"id": "c1", "text": "hi", "account": "bob.test"}, "account"), ([1], "body")):
        r = web.post("/api/v1/posts/7/replies", json=body)
        assert r.status_code == 422 and field in r.json()["errors"], (body, r.text)
    r = web.post("/api/v1/posts/7/replies", json={"id": 99, "text": "Merci !"})
    assert r.status_code == 202, r.text
    assert r.json()["id"] == "99" and r.json()["reply_to"] == "7"
    assert set(r.json()) == {"id", "status", "reason", "deliveries", "interactions", "reply_to"}
    assert web.post("/api/v1/posts/7/replies", json={"id": "99", "text": "Merci !"}).status_code == 200
    web.app.run_worker(burst=True)
    items = web.get("/api/v1/posts/7/replies").json()["items"]
    assert [(i["id"], i["status"]) for i in items] == [("99", "completed")]
    assert [p["id"] for p in web.get("/api/v1/posts").json()["items"]] == ["7"]
    with web.app.db.connect() as conn:
        gates = conn.all("SELECT threadgate, postgate FROM deliveries ORDER BY id")
    # the post has both gates; a reply never has one
    assert [(g["threadgate"], bool(g["postgate"])) for g in gates] == [("following", True), (None, False)]
