-- A worker's turn in two statements (issue 18). Before, preparing a turn took a transaction of
-- nine statements and storing its answer two more, each a round trip; now each is one call of a
-- function below, which runs in the statement's own transaction, so a failure halfway leaves
-- nothing written, as before. What stays in the worker: deciding what the context holds
-- (`workers/src/context.rs`) and the knowledge search, which only turns with folders make.
-- Every function is plpgsql, the helpers too: Postgres plans a SQL-language function it cannot
-- inline at each call, while plpgsql keeps its statements' plans for the connection's life
-- (measured with pgbench, one client: 0.69 ms per prepared turn with SQL helpers, 0.32 ms
-- with plpgsql ones).

-- Where a turn stands in its conversation's order: 'cancelled' (flagged before it started),
-- 'behind' (an earlier turn of the conversation is pending and not past its deadline), or
-- 'free'. The worker's polling wait asks this too (`workers/src/order.rs`).
CREATE FUNCTION confab_turn_place(p_tenant uuid, p_conversation text, p_request uuid)
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN CASE
        WHEN EXISTS (SELECT 1 FROM pending_turns me
                     WHERE me.tenant_id = p_tenant AND me.conversation_id = p_conversation
                       AND me.request_id = p_request AND me.cancelled) THEN 'cancelled'
        WHEN EXISTS (SELECT 1 FROM pending_turns earlier, pending_turns me
                     WHERE me.tenant_id = p_tenant AND me.conversation_id = p_conversation
                       AND me.request_id = p_request
                       AND earlier.tenant_id = p_tenant AND earlier.conversation_id = p_conversation
                       AND earlier.place < me.place AND earlier.deadline > now()) THEN 'behind'
        ELSE 'free'
    END;
END
$$;

-- A turn's answer as the worker reads it back, or NULL.
CREATE FUNCTION confab_answer_of_turn(p_conversation_pk bigint, p_answers text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'id', a.id, 'content', a.content,
        'created_ms', (extract(epoch FROM a.created_at) * 1000)::int8,
        'model', coalesce(a.model, ''), 'prompt_tokens', coalesce(a.prompt_tokens, 0),
        'completion_tokens', coalesce(a.completion_tokens, 0), 'tool_calls', a.tool_calls)
    FROM messages a WHERE a.conversation_pk = p_conversation_pk AND a.answers = p_answers);
END
$$;

-- The newest complete turns of a conversation between two messages whose running token count,
-- newest first, is within p_window, oldest first, each with its `running` count (so a reader
-- whose window is smaller can trim them), and the oldest turn after p_after, which comes along
-- even when it does not fit, to tell what the summary lacks.
CREATE FUNCTION confab_recent_turns(
    p_conversation_pk bigint, p_after bigint, p_before bigint, p_window bigint,
    OUT recent jsonb, OUT oldest_pk bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    SELECT jsonb_agg(jsonb_build_object('pk', t.pk, 'role', t.role, 'content', t.content,
                                        'tool_calls', t.tool_calls,
                                        'tool_call_id', t.tool_call_id, 'running', t.running)
                     ORDER BY t.pk),
           min(t.oldest)
      INTO recent, oldest_pk
      FROM (SELECT n.*, sum(n.tokens) OVER (ORDER BY n.pk DESC) AS running,
                   min(n.pk) OVER () AS oldest
              FROM (SELECT r.pk, r.role, r.content, r.tokens, r.tool_calls, r.tool_call_id
                      FROM messages r
                     WHERE r.conversation_pk = p_conversation_pk AND r.pk > p_after
                       AND r.pk < p_before AND r.status = 'complete'
                     ORDER BY r.pk DESC LIMIT 1000) n) t
     WHERE t.running <= p_window OR t.pk = t.oldest;
END
$$;

-- Prepare a turn: check its place (with p_check_order), store its messages (the history the job
-- carries, then its message; once, however often the job is delivered), and read what its
-- context may hold. Nothing is written when the turn must wait, was cancelled, or names an
-- assistant the tenant does not have (then `assistant` is NULL). Messages are
-- `[{id, role, content, tokens, metadata, created_ms, tool_calls, tool_call_id}]`, the job's
-- message last. The recent turns are those after the summary and before the message, read for
-- p_window (`confab_recent_turns`).
CREATE FUNCTION confab_prepare_turn(
    p_tenant uuid, p_conversation text, p_request uuid, p_check_order boolean,
    p_assistant uuid, p_identity uuid, p_channel uuid,
    p_messages jsonb, p_awaits_answer boolean, p_window bigint,
    OUT turn_place text, OUT assistant jsonb,
    OUT conv_pk bigint, OUT conv_summary text, OUT conv_summary_upto bigint,
    OUT msg_pk bigint, OUT existing_answer jsonb, OUT identity_memory jsonb,
    OUT recent jsonb, OUT recent_oldest_pk bigint, OUT earlier_steps jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    m jsonb;
    has_tools boolean := false;
BEGIN
    turn_place := CASE WHEN p_check_order
                       THEN confab_turn_place(p_tenant, p_conversation, p_request)
                       ELSE 'free' END;
    IF turn_place <> 'free' THEN
        RETURN;
    END IF;
    IF p_assistant IS NOT NULL THEN
        SELECT jsonb_build_object('name', a.name, 'instructions', a.instructions,
                                  'model', a.model, 'folder_ids', to_jsonb(a.folder_ids),
                                  'tools', a.tools),
               jsonb_array_length(a.tools) > 0
          INTO assistant, has_tools
          FROM assistants a WHERE a.id = p_assistant AND a.tenant_id = p_tenant;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    -- This transaction need not wait for its WAL flush: until the answer's own (synchronous)
    -- commit, which flushes this one's WAL too, the job stays unacked in its queue, and a
    -- redelivery after a database crash prepares the turn again.
    PERFORM set_config('synchronous_commit', 'off', true);

    INSERT INTO conversations AS c (tenant_id, id, assistant_id, identity_id, channel_id)
    VALUES (p_tenant, p_conversation, p_assistant, p_identity, p_channel)
    ON CONFLICT (tenant_id, id) DO UPDATE SET updated_at = now()
    RETURNING c.pk, c.summary, c.summary_upto_pk INTO conv_pk, conv_summary, conv_summary_upto;

    -- On a conflict the no-op update is what makes RETURNING answer; it only happens when a
    -- job is delivered again.
    FOR m IN SELECT value FROM jsonb_array_elements(p_messages) LOOP
        INSERT INTO messages AS s (conversation_pk, id, role, content, tokens, metadata,
                                   request_id, created_at, tool_calls, tool_call_id)
        VALUES (conv_pk, m->>'id', m->>'role', m->>'content', (m->>'tokens')::int,
                m->'metadata', p_request, to_timestamp((m->>'created_ms')::float8 / 1000),
                nullif(m->'tool_calls', 'null'::jsonb), m->>'tool_call_id')
        ON CONFLICT (conversation_pk, id) DO UPDATE SET id = EXCLUDED.id
        RETURNING s.pk INTO msg_pk;
    END LOOP;

    existing_answer := confab_answer_of_turn(conv_pk, (p_messages -> -1) ->> 'id');
    IF existing_answer IS NOT NULL OR NOT p_awaits_answer THEN
        RETURN;
    END IF;

    IF p_identity IS NOT NULL THEN
        SELECT jsonb_build_object('name', i.name, 'stage', i.stage,
                                  'preferences', i.preferences, 'data', i.data,
                                  'associations', i.associations)
          INTO identity_memory
          FROM identities i WHERE i.tenant_id = p_tenant AND i.id = p_identity;
    END IF;

    SELECT r.recent, r.oldest_pk INTO recent, recent_oldest_pk
      FROM confab_recent_turns(conv_pk, conv_summary_upto, msg_pk, p_window) r;

    -- Only a turn with tools can have steps, and only a redelivered one has any stored.
    IF has_tools THEN
        SELECT jsonb_agg(jsonb_build_object('pk', s.pk, 'role', s.role, 'content', s.content,
                                            'tool_calls', s.tool_calls,
                                            'tool_call_id', s.tool_call_id)
                         ORDER BY s.pk)
          INTO earlier_steps
          FROM messages s
         WHERE s.conversation_pk = conv_pk AND s.pk > msg_pk AND s.request_id = p_request
           AND s.answers IS NULL;
    END IF;
END
$$;

-- Store a turn's answer and release the turn's place in its conversation's order, in one
-- (synchronously committed) transaction: later turns may go ahead once the answer they must see
-- is stored. A turn has one answer: if a concurrent delivery stored one first, nothing is
-- inserted and that one is returned (`inserted` false); otherwise only its creation time is.
CREATE FUNCTION confab_store_answer(
    p_tenant uuid, p_conversation text, p_request uuid,
    p_conversation_pk bigint, p_id text, p_answers text, p_content text, p_tokens int,
    p_status text, p_model text, p_prompt_tokens int, p_completion_tokens int,
    p_first_token_ms int, p_total_ms int, p_metadata jsonb, p_tool_calls jsonb,
    OUT inserted boolean, OUT created_ms int8, OUT existing_answer jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO messages AS s (conversation_pk, id, role, content, tokens, answers, status,
                               model, prompt_tokens, completion_tokens, first_token_ms,
                               total_ms, request_id, metadata, tool_calls)
    VALUES (p_conversation_pk, p_id, 'assistant', p_content, p_tokens, p_answers, p_status,
            p_model, p_prompt_tokens, p_completion_tokens, p_first_token_ms, p_total_ms,
            p_request, p_metadata, p_tool_calls)
    ON CONFLICT DO NOTHING
    RETURNING (extract(epoch FROM s.created_at) * 1000)::int8 INTO created_ms;
    inserted := FOUND;
    IF NOT inserted THEN
        existing_answer := confab_answer_of_turn(p_conversation_pk, p_answers);
    END IF;
    DELETE FROM pending_turns pt
     WHERE pt.tenant_id = p_tenant AND pt.conversation_id = p_conversation
       AND pt.request_id = p_request;
END
$$;
