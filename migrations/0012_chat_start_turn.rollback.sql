DROP FUNCTION chat_start_turn(uuid, uuid, int, text, jsonb, int);
