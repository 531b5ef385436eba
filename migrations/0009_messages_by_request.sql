-- A reconnecting stream names its request (`Last-Event-ID`); its answer is found by the
-- request's id. Only answers carry one.
CREATE INDEX messages_request ON messages (request_id) WHERE request_id IS NOT NULL;
