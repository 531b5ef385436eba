-- Tenants, their API keys, assistants, conversations and messages.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are shown once at creation and stored only as a SHA-256 digest.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    prefix      text NOT NULL,
    digest      bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE assistants (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    slug          text NOT NULL,
    instructions  text NOT NULL DEFAULT '',
    -- 'builtin' or 'openai/<model-name>'
    model         text NOT NULL DEFAULT 'builtin',
    deployed      boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, slug)
);

-- A conversation's public id is chosen by the client in some dialects, so it is text, unique
-- per tenant; `pk` is the internal key messages hang off.
CREATE TABLE conversations (
    pk            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            text NOT NULL,
    assistant_id  uuid REFERENCES assistants (id) ON DELETE SET NULL,
    identity_id   uuid,
    channel_id    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- Message ids are idempotency keys within a conversation: a redelivered job stores its user
-- turn once. `answers` links an assistant turn to the user turn it answers; one answer each.
CREATE TABLE messages (
    pk                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_pk    bigint NOT NULL REFERENCES conversations (pk) ON DELETE CASCADE,
    id                 text NOT NULL,
    role               text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content            text NOT NULL,
    tokens             integer NOT NULL,
    answers            text,
    status             text NOT NULL DEFAULT 'complete'
                         CHECK (status IN ('complete', 'interrupted')),
    model              text,
    prompt_tokens      integer,
    completion_tokens  integer,
    first_token_ms     integer,
    total_ms           integer,
    request_id         uuid,
    metadata           jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_pk, id)
);
CREATE INDEX messages_history ON messages (conversation_pk, pk DESC);
CREATE UNIQUE INDEX messages_one_answer_per_turn ON messages (conversation_pk, answers)
    WHERE answers IS NOT NULL;
