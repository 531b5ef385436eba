-- Tool calling (OpenAI's client-side tools): an assistant message may call the caller's
-- functions instead of answering (`tool_calls`, `[{id, name, arguments}]`), and a `tool`
-- message answers one of those calls (`tool_call_id`). Both stay NULL for messages of text.
ALTER TABLE messages
    ADD COLUMN tool_calls jsonb,
    ADD COLUMN tool_call_id text,
    DROP CONSTRAINT messages_role_check,
    ADD CONSTRAINT messages_role_check
        CHECK (role IN ('user', 'assistant', 'system', 'tool'));
