-- Tools. An assistant message may call functions instead of answering (`tool_calls`,
-- `[{id, name, arguments}]`), and a `tool` message answers one of those calls (`tool_call_id`);
-- both stay NULL for messages of text. The functions are the caller's own (OpenAI's client-side
-- tools) or the assistant's (`assistants.tools`, which the worker calls itself; their secrets are
-- sealed like channel secrets).
ALTER TABLE messages
    ADD COLUMN tool_calls jsonb,
    ADD COLUMN tool_call_id text,
    DROP CONSTRAINT messages_role_check,
    ADD CONSTRAINT messages_role_check
        CHECK (role IN ('user', 'assistant', 'system', 'tool'));

ALTER TABLE assistants ADD COLUMN tools jsonb NOT NULL DEFAULT '[]';
