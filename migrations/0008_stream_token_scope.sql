-- Stream tokens narrowed to one identity on one channel, and to one stream: a token leaked from
-- a URL (proxies and browser histories keep them) could otherwise read any identity of its
-- tenant, any number of times, for five minutes. `used_at` and `request_id` record the one
-- stream the token started; a later use of the token is refused.
-- Tokens minted before this migration are tenant-wide and live for minutes; they are dropped
-- rather than given a scope they never had.
DELETE FROM stream_tokens;

ALTER TABLE stream_tokens
    ADD COLUMN identity_id uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    ADD COLUMN channel_id  uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    ADD COLUMN used_at     timestamptz,
    ADD COLUMN request_id  uuid;
