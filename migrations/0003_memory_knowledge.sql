-- Identity memory, the knowledge base (documents split into searchable chunks) and running
-- summaries of long conversations.

-- What the assistant knows about an identity, on every channel: preferences and data (free-form
-- JSON), the stage of the customer journey, and custom associations.
ALTER TABLE identities
    ADD COLUMN preferences   jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN data          jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN stage         text,
    ADD COLUMN associations  jsonb NOT NULL DEFAULT '{}';

CREATE TABLE documents (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    folder_id     uuid NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    title         text NOT NULL,
    -- 'text' or 'markdown'
    format        text NOT NULL CHECK (format IN ('text', 'markdown')),
    content       text NOT NULL,
    -- SHA-256 of format, title and content: an unchanged re-import is recognised and skipped.
    content_hash  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- A document is identified by its title within its folder; importing it again replaces it.
    UNIQUE (folder_id, title)
);

-- Passages of a document, split along headings and paragraphs. `search` weighs the document
-- title and the passage's heading (A) above its text (B), in the folder's language.
CREATE TABLE chunks (
    pk           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    folder_id    uuid NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    ordinal      integer NOT NULL,
    heading      text NOT NULL DEFAULT '',
    content      text NOT NULL,
    tokens       integer NOT NULL,
    search       tsvector NOT NULL
);
CREATE INDEX chunks_search ON chunks USING gin (search);
CREATE INDEX chunks_folder ON chunks (folder_id);
CREATE INDEX chunks_document ON chunks (document_id, ordinal);

-- A running summary of the turns that no longer fit the context, and the last message it covers.
ALTER TABLE conversations
    ADD COLUMN summary           text NOT NULL DEFAULT '',
    ADD COLUMN summary_upto_pk   bigint NOT NULL DEFAULT 0;
