"""A post's conversation on Bluesky: the replies, quotes, likes and reposts it gathers come
back (backfeed), are stored (the interactions table) and are told to the site (signed
webhooks and Webmention, through a durable outbox)."""
