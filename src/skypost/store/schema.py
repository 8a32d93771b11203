"""The SQLAlchemy Core schema, shared by SQLite and PostgreSQL.

Times are stored as UNIX seconds (float): the same comparisons work on both
databases and the clock stays injectable.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("handle", sa.String(253), nullable=False, unique=True),
    sa.Column("did", sa.String(2048), nullable=False),
    sa.Column("service", sa.String(2048), nullable=False),
    sa.Column("auto_syndicate", sa.Boolean, nullable=False, default=True),
    sa.Column("include_categories", sa.JSON, nullable=False),
    sa.Column("exclude_categories", sa.JSON, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    # Fernet tokens: the app password and the exported session
    sa.Column("password_enc", sa.Text, nullable=False),
    sa.Column("session_enc", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # who may reply to its posts: NULL = everyone, else "nobody" or "following,mentioned"
    sa.Column("replies", sa.String(64), nullable=True),
    # false: its posts get a postgate that disables quoting
    sa.Column("quotes", sa.Boolean, nullable=False, server_default=sa.true()),
)

posts = sa.Table(
    "posts",
    metadata,
    # seq is the submit order (rule 4)
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("post_id", sa.String(255), nullable=False, unique=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("source", sa.String(64), nullable=False, default="api"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # set once, when a delete is requested: the id is never syndicated again (a repost clears it)
    sa.Column("delete_requested_at", sa.Float, nullable=True),
    # which deliveries are the post's own: a repost starts a new generation with new record keys
    sa.Column("generation", sa.Integer, nullable=False, server_default=sa.text("0")),
    # "post" (the site's) or "reply" (a site comment published under a post's record)
    sa.Column("kind", sa.String(16), nullable=False, server_default="post"),
    # replies: the post they answer (its seq), the site's comment id, and the record answered
    # when it is not the post's own record (uri; cid when known at submit)
    sa.Column("parent_seq", sa.Integer, nullable=True),
    sa.Column("reply_id", sa.String(255), nullable=True),
    sa.Column("reply_parent_uri", sa.String(2048), nullable=True),
    sa.Column("reply_parent_cid", sa.String(256), nullable=True),
    sa.Index("ix_posts_status_seq", "status", "seq"),
    # one comment id per post: the same reply is never published twice
    sa.Index("uq_posts_parent_reply", "parent_seq", "reply_id", unique=True),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("post_seq", sa.Integer, sa.ForeignKey("posts.seq", ondelete="CASCADE"), nullable=False),
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
    # copies, so that history survives the removal of an account
    sa.Column("handle", sa.String(253), nullable=False),
    sa.Column("did", sa.String(2048), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # an attempt may have reached the PDS: check for the record before creating it again
    sa.Column("tried", sa.Boolean, nullable=False, default=False),
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    # the record key, chosen at submit time: the same key on every attempt (rule 9)
    sa.Column("rkey", sa.String(13), nullable=False),
    sa.Column("uri", sa.String(2048), nullable=True),
    sa.Column("cid", sa.String(256), nullable=True),
    sa.Column("url", sa.String(2048), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("completed_at", sa.Float, nullable=True),
    # why a delivery stopped (transient_exhausted, auth, permanent, removed): what recovery queries
    sa.Column("failure_kind", sa.String(32), nullable=True),
    # publish: attempts create the record; delete: they remove it (and its gates)
    sa.Column("intent", sa.String(16), nullable=False, server_default=sa.text("'publish'")),
    sa.Column("generation", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.UniqueConstraint("post_seq", "account_id", "generation", name="uq_deliveries_post_account"),
    # the gates written with the post in one applyWrites, under the post's rkey (deleting the
    # post deletes them): the threadgate's rules ("nobody", "following,mentioned"; NULL: none)
    # and whether a postgate disables quotes. Fixed at submit, so every attempt writes the same.
    sa.Column("threadgate", sa.String(64), nullable=True),
    sa.Column("postgate", sa.Boolean, nullable=False, server_default=sa.false()),
    # a record key names one record of an account: two deliveries never share it
    sa.Index("uq_deliveries_account_rkey", "account_id", "rkey", unique=True),
    sa.Index("ix_deliveries_account_status_seq", "account_id", "status", "post_seq"),
    sa.Index("ix_deliveries_post_seq", "post_seq"),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("args", sa.JSON, nullable=False),
    # the post a syndication job works on, so that finished deliveries can wake followers
    sa.Column("post_seq", sa.Integer, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # todo / doing / done / failed
    sa.Column("run_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_jobs_status_run_at", "status", "run_at"),
    sa.Index("ix_jobs_post_seq", "post_seq"),
    sa.Index("ix_jobs_status_updated_at", "status", "updated_at"),
    sa.Index("uq_jobs_recurring", "kind", unique=True,
             sqlite_where=sa.text("kind = 'prune' AND status IN ('todo', 'doing')"),
             postgresql_where=sa.text("kind = 'prune' AND status IN ('todo', 'doing')")),
)

breakers = sa.Table(
    "breakers",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # closed / open / half_open
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("opened_at", sa.Float, nullable=True),
    sa.Column("open_until", sa.Float, nullable=True),
    sa.Column("probe_owner", sa.String(255), nullable=True),
    sa.Column("probe_until", sa.Float, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    # "account:<id>" or "host:<egress id>:<service host>"
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("limit", sa.Integer, nullable=True),
    sa.Column("remaining", sa.Integer, nullable=True),
    sa.Column("reset_at", sa.Float, nullable=True),
    sa.Column("policy", sa.String(255), nullable=True),
    sa.Column("blocked_until", sa.Float, nullable=True),
    sa.Column("consecutive_429", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("post_id", sa.String(255), nullable=True),
    sa.Column("account", sa.String(253), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON, nullable=True),
    sa.Index("ix_events_ts", "ts"),
    sa.Index("ix_events_post_id", "post_id"),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # running / stopped
    sa.Column("jobs_done", sa.Integer, nullable=False, default=0),
)

# --- serve: API tokens and webhooks ------------------------------------------------

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    # SHA-256 of the token: the token itself is shown once and never stored
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

# dashboard sessions, server side: logging out or revoking the token deletes them
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    # SHA-256 of the session id; the id itself is only in the browser's signed cookie
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.Integer, sa.ForeignKey("tokens.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

hooks = sa.Table(
    "hooks",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # generic / ghost / wordpress
    sa.Column("secret_enc", sa.Text, nullable=False),
    sa.Column("accounts", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # what Ghost's post.unpublished does: keep the Bluesky post, or delete it
    sa.Column("on_unpublish", sa.String(16), nullable=False, server_default=sa.text("'keep'")),
)

# --- feeds --------------------------------------------------------------------------

feeds = sa.Table(
    "feeds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(2048), nullable=False, unique=True),
    sa.Column("accounts", sa.JSON, nullable=False),
    sa.Column("include_categories", sa.JSON, nullable=False),
    sa.Column("interval", sa.Float, nullable=False),
    sa.Column("backfill", sa.Integer, nullable=False, default=0),
    # entries published before this time are the backlog: not syndicated
    sa.Column("cutoff", sa.Float, nullable=True),
    sa.Column("etag", sa.String(1024), nullable=True),
    sa.Column("last_modified", sa.String(255), nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("last_polled_at", sa.Float, nullable=True),
    sa.Column("next_poll_at", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("error_count", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

feed_entries = sa.Table(
    "feed_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feed_id", sa.Integer, sa.ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    # a stable key of the entry (guid/id, else link): seen once, never submitted again
    sa.Column("entry_key", sa.String(512), nullable=False),
    sa.Column("post_id", sa.String(255), nullable=True),
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.UniqueConstraint("feed_id", "entry_key", name="uq_feed_entries_feed_key"),
)

# --- the conversation: what a syndicated post gathers on Bluesky ----------------------

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),  # reply / quote / like / repost
    # the reaction's own record: stored once, whatever the overlap of polls and workers
    sa.Column("uri", sa.String(2048), nullable=False, unique=True),
    sa.Column("cid", sa.String(256), nullable=True),
    sa.Column("post_seq", sa.Integer, sa.ForeignKey("posts.seq", ondelete="CASCADE"), nullable=False),
    # the delivery (one account's record of the post) the reaction targets
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="SET NULL"), nullable=True),
    sa.Column("account", sa.String(253), nullable=False),  # handle copy, like deliveries.handle
    sa.Column("subject_uri", sa.String(2048), nullable=False),  # the syndicated record it targets
    sa.Column("author_did", sa.String(2048), nullable=False),
    sa.Column("author_handle", sa.String(253), nullable=True),
    sa.Column("author_display_name", sa.Text, nullable=True),
    sa.Column("author_avatar", sa.String(2048), nullable=True),
    # replies and quotes: the text with facet links spelt out in full; None for likes/reposts
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("parent_uri", sa.String(2048), nullable=True),  # replies: what it answers
    sa.Column("created_at", sa.Float, nullable=True),  # the record's createdAt
    sa.Column("indexed_at", sa.Float, nullable=False),  # when skypost stored it
    sa.Column("removed_at", sa.Float, nullable=True),  # undone or deleted on Bluesky
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_interactions_post_seq_kind", "post_seq", "kind"),
)

# --- the backfeed: how far each account's polls have read -------------------------------

backfeed_state = sa.Table(
    "backfeed_state",
    metadata,
    sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    # watermarks, in the network's own times (not this host's clock): the AppView's indexedAt of
    # the newest notification read, the createdAt of the newest own like / repost / post read
    sa.Column("notifications_until", sa.Float, nullable=True),
    sa.Column("likes_until", sa.Float, nullable=True),
    sa.Column("reposts_until", sa.Float, nullable=True),
    sa.Column("posts_until", sa.Float, nullable=True),
    sa.Column("polls", sa.Integer, nullable=False, default=0),
    sa.Column("last_poll_at", sa.Float, nullable=True),
    sa.Column("full_reconciled_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# a reaction is matched to the delivery whose record it targets, by that record's AT-URI
sa.Index("ix_deliveries_uri", deliveries.c.uri)
# reconciliation reads the live reactions of one delivery
sa.Index("ix_interactions_delivery_kind", interactions.c.delivery_id, interactions.c.kind)

# one waiting or running backfeed job per account: the account id lives in the JSON args,
# so the unique partial index is on an expression, spelt per database
BACKFEED_JOB_INDEX = {
    "sqlite": "CREATE UNIQUE INDEX IF NOT EXISTS uq_jobs_backfeed ON jobs "
              "(json_extract(args, '$.account_id')) WHERE kind = 'backfeed' AND status IN ('todo', 'doing')",
    "postgresql": "CREATE UNIQUE INDEX IF NOT EXISTS uq_jobs_backfeed ON jobs "
                  "((args->>'account_id')) WHERE kind = 'backfeed' AND status IN ('todo', 'doing')",
}
for _dialect, _ddl in BACKFEED_JOB_INDEX.items():
    sa.event.listen(jobs, "after_create",
                    sa.DDL(_ddl).execute_if(dialect=_dialect))  # type: ignore[no-untyped-call]

# --- telling the site: signed webhooks and Webmentions, through a durable outbox ----------

notify_targets = sa.Table(
    "notify_targets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(2048), nullable=False, unique=True),
    sa.Column("events", sa.JSON, nullable=False),  # the event types it is sent
    sa.Column("secret_enc", sa.Text, nullable=False),  # Fernet token of the signing secret
    sa.Column("created_at", sa.Float, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # sent as X-Skypost-Event-Id: the same on every attempt, so that receivers deduplicate
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(32), nullable=False),  # interaction.created / .removed / post.status
    sa.Column("channel", sa.String(16), nullable=False),  # webhook / webmention
    sa.Column("target", sa.String(2048), nullable=False),  # the webhook URL, or the Webmention target
    sa.Column("target_id", sa.Integer, sa.ForeignKey("notify_targets.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("interaction_id", sa.Integer, nullable=True),
    # rows with the same key go out in id order (a removal after its creation)
    sa.Column("order_key", sa.String(255), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # webhook: the exact body; webmention: source/target
    sa.Column("status", sa.String(16), nullable=False),  # pending / sending / sent / failed / skipped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=True),
    # a claimed row whose worker vanished before recording the outcome is sent again after this
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
    sa.Index("ix_outbox_order_key", "order_key", "id"),
)
