-- A turn's place in its conversation is given when the ingress records it, atomically: the
-- upsert of the conversation's counter row locks that row until the recording statement commits,
-- so a turn recorded later always gets a later place and sees every earlier turn's row. (Request
-- ids order by arrival, but a later request could commit its row before an earlier one did and
-- pass the order check, and both turns ran at once.)
-- Unlogged like `pending_turns`: a crash empties both together.
CREATE UNLOGGED TABLE turn_places (
    tenant_id        uuid NOT NULL,
    conversation_id  text NOT NULL,
    last_place       bigint NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, conversation_id)
);

ALTER TABLE pending_turns ADD COLUMN place bigint NOT NULL DEFAULT 0;
CREATE INDEX pending_turns_place ON pending_turns (tenant_id, conversation_id, place);
