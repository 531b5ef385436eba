-- Every ingress process remembers the assistants it looked up by slug and must forget one as
-- soon as it changes (`src/store/assistant_cache.rs`): an update or delete notifies
-- `confab_assistants` with the tenant's id, delivered to every listener when the change commits.
-- New assistants need no notice: only assistants that exist are remembered.
CREATE FUNCTION confab_assistant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('confab_assistants', OLD.tenant_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER assistants_changed AFTER UPDATE OR DELETE ON assistants
    FOR EACH ROW EXECUTE FUNCTION confab_assistant_changed();
