-- Turns waiting to be answered, per conversation. The ingress adds a row before it publishes a
-- job; a worker answers a turn only when no earlier pending turn of the same conversation is
-- left (request ids are UUIDv7, so they order by arrival), and removes the row when done. Rows
-- past their deadline no longer hold anything up. Unlogged: losing the rows in a database crash
-- only relaxes the ordering for the turns in flight at that moment.
CREATE UNLOGGED TABLE pending_turns (
    tenant_id        uuid NOT NULL,
    conversation_id  text NOT NULL,
    request_id       uuid NOT NULL,
    deadline         timestamptz NOT NULL,
    -- Set by `POST /v1/requests/{id}/cancel`; a worker that finds it set does not start the turn.
    cancelled        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, conversation_id, request_id)
);
CREATE INDEX pending_turns_deadline ON pending_turns (deadline);
CREATE INDEX pending_turns_request ON pending_turns (request_id);
