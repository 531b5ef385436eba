-- Visitors of public web channels (the widget and the hosted chat page).
--
-- A visitor token is what a page holds: short-lived, good for one identity on one channel, and
-- nothing else. Only its SHA-256 digest is stored.
CREATE TABLE visitor_tokens (
    digest       bytea PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel_id   uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    identity_id  uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX visitor_tokens_expiry ON visitor_tokens (expires_at);

-- The rate limits of visitors, per channel and per visitor: GCRA as in rate_gcra, keyed by a
-- subject (`channel:<id>`, `visitor:<identity id>`) instead of an API key, so that no page can
-- spend the tenant's key limits. Unlogged for the same reasons.
CREATE UNLOGGED TABLE visitor_rate (
    subject  text PRIMARY KEY,
    tat      timestamptz NOT NULL
);
