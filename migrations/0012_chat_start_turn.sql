-- The start of a chat turn (agents.md §3.4 step 5) as one call, so the gateway pays one round trip for it: take the
-- per-(user, project) thread lock, append the user message to the active thread (the newest one updated within the
-- idle window) or to a new one titled after the message, and, when asked, return the thread's earlier messages.
-- Each statement of a VOLATILE function takes a fresh snapshot under READ COMMITTED, so everything after the lock
-- sees the turns committed before it was granted. The lock key is the one thread creation takes
-- (gateway/chat/queries.py LOCK_USER_PROJECT); it is released when the caller's transaction ends.
-- depends: 0011_chat_audit_route

CREATE FUNCTION chat_start_turn(p_user uuid, p_project uuid, p_idle_s int, p_content text, p_metadata jsonb,
                                p_history int)
RETURNS TABLE (message_id uuid, thread_id uuid, created boolean, history jsonb)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_thread uuid;
    v_message uuid;
    v_history jsonb := '[]'::jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user::text || '/' || p_project::text, 0));
    SELECT t.id INTO v_thread FROM chat_threads t
    WHERE t.user_id = p_user AND t.project_id = p_project
      AND t.updated_at > now() - make_interval(secs => p_idle_s)
    ORDER BY t.updated_at DESC, t.id DESC
    LIMIT 1;
    IF v_thread IS NULL THEN
        INSERT INTO chat_threads (user_id, project_id, title) VALUES (p_user, p_project, left(p_content, 60))
        RETURNING id INTO v_thread;
        created := true;
    ELSE
        UPDATE chat_threads t SET updated_at = now(), title = coalesce(t.title, left(p_content, 60))
        WHERE t.id = v_thread;
        created := false;
        IF p_history > 0 THEN  -- oldest first, as [role, content] pairs
            SELECT coalesce(jsonb_agg(jsonb_build_array(r.role, r.content) ORDER BY r.created_at, r.id), '[]'::jsonb)
            INTO v_history
            FROM (SELECT m.role, m.content, m.created_at, m.id FROM chat_messages m
                  WHERE m.thread_id = v_thread
                  ORDER BY m.created_at DESC, m.id DESC
                  LIMIT p_history) r;
        END IF;
    END IF;
    INSERT INTO chat_messages (thread_id, role, content, metadata) VALUES (v_thread, 'user', p_content, p_metadata)
    RETURNING id INTO v_message;
    message_id := v_message;
    thread_id := v_thread;
    history := v_history;
    RETURN NEXT;
END
$$;
