-- Messages exchanged with channel platforms (WhatsApp, Telegram): what came in, deduplicated by
-- the platform's own id, and what went out, tracked to its delivery status.

-- One row per platform message received. The primary key is the dedupe: a message id seen
-- before (a platform retry, a replay, a concurrent duplicate delivery) is not answered again.
CREATE TABLE channel_inbox (
    channel_id       uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    external_id      text NOT NULL,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    identity_id      uuid NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
    conversation_id  text NOT NULL,
    -- Where the answer goes on the platform (a WhatsApp number, a Telegram chat id).
    reply_address    text NOT NULL,
    -- The job that answers it; reply events carry it as their correlation id.
    request_id       uuid NOT NULL UNIQUE,
    -- queued: a job answers it; stale: too old to answer (stored only); fixed: answered without
    -- the model (a message kind the assistant cannot read).
    state            text NOT NULL CHECK (state IN ('queued', 'stale', 'fixed')),
    sent_at          timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, external_id)
);
CREATE INDEX channel_inbox_tenant ON channel_inbox (tenant_id);

-- One row per platform message sent (an answer longer than the platform's limit is several).
-- Status notifications may arrive before the sender recorded the row, so either side creates it.
CREATE TABLE channel_outbox (
    channel_id   uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    external_id  text NOT NULL,
    message_pk   bigint REFERENCES messages (pk) ON DELETE CASCADE,
    status       text NOT NULL,
    error        jsonb,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, external_id)
);
CREATE INDEX channel_outbox_message ON channel_outbox (message_pk);

-- Where an assistant message sent to a platform stands: accepted < sent < delivered < read, or
-- failed (with the platform's error). Never moves backwards.
ALTER TABLE messages
    ADD COLUMN delivery_status text
        CHECK (delivery_status IN ('accepted', 'sent', 'delivered', 'read', 'failed')),
    ADD COLUMN delivery_error jsonb;

-- The rank that keeps delivery statuses monotonic.
CREATE FUNCTION delivery_rank(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE status
        WHEN 'accepted' THEN 1 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3
        WHEN 'read' THEN 4 WHEN 'failed' THEN 5 ELSE 0 END;

-- A sent part's status, whoever wrote it (the sender or a status notification), moves its
-- message forward, never back.
CREATE FUNCTION carry_delivery_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message_pk IS NOT NULL THEN
        UPDATE messages
           SET delivery_status = NEW.status,
               delivery_error = coalesce(NEW.error, delivery_error)
         WHERE pk = NEW.message_pk
           AND delivery_rank(NEW.status) > delivery_rank(delivery_status);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER channel_outbox_carry_status AFTER INSERT OR UPDATE ON channel_outbox
    FOR EACH ROW EXECUTE FUNCTION carry_delivery_status();

-- Other ids a platform knows an identity by (WhatsApp's business-scoped user id beside the
-- phone number), so a user is recognised whichever one a message carries.
ALTER TABLE identities ADD COLUMN platform_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX identities_platform_ids ON identities USING gin (platform_ids);
