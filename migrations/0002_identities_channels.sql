-- Identities (end users), channels (how they reach an assistant), knowledge folders, per-key rate
-- limits and short-lived stream tokens.

CREATE TABLE identities (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text,
    -- A phone number, a platform user id, an e-mail: unique per tenant when given.
    external_id  text,
    profile      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE channels (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('web', 'whatsapp', 'telegram', 'custom')),
    -- The assistant that answers on this channel.
    assistant_id  uuid NOT NULL REFERENCES assistants (id) ON DELETE RESTRICT,
    -- Channel credentials and settings; secrets in it are never returned by the API.
    config        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX channels_tenant ON channels (tenant_id);

ALTER TABLE conversations
    ADD CONSTRAINT conversations_identity FOREIGN KEY (identity_id)
        REFERENCES identities (id) ON DELETE CASCADE,
    ADD CONSTRAINT conversations_channel FOREIGN KEY (channel_id)
        REFERENCES channels (id) ON DELETE SET NULL,
    -- A conversation stays open for its identity and channel until the caller starts a new one.
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
-- At most one open conversation per identity and channel: the one its next message continues.
CREATE UNIQUE INDEX conversations_open_per_identity
    ON conversations (tenant_id, identity_id, channel_id)
    WHERE closed_at IS NULL AND identity_id IS NOT NULL AND channel_id IS NOT NULL;
CREATE INDEX conversations_recent ON conversations (tenant_id, updated_at DESC);

CREATE TABLE folders (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    -- A Postgres text search configuration name.
    language    text NOT NULL DEFAULT 'english',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

ALTER TABLE assistants ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE assistants ADD COLUMN folder_ids uuid[] NOT NULL DEFAULT '{}';

-- Requests per minute for this key; NULL means the deployment default.
ALTER TABLE api_keys ADD COLUMN rate_limit_per_min integer CHECK (rate_limit_per_min > 0);

-- Fixed one-minute windows counted in the database, so every ingress process shares them.
-- Unlogged: a count lost in a crash is harmless, and commits touching only this table need no
-- WAL flush, which keeps the check off the request's critical path.
CREATE UNLOGGED TABLE rate_windows (
    key_id        uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    window_start  timestamptz NOT NULL,
    count         integer NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

-- Short-lived tokens for browsers' EventSource, which cannot send an Authorization header.
-- Stored as a digest, like keys; they expire within minutes.
CREATE TABLE stream_tokens (
    digest      bytea PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id      uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX stream_tokens_expiry ON stream_tokens (expires_at);
