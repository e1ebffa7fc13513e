-- A connect session's viewer token: only its SHA-256 (64 lowercase hex characters) is kept.
-- The token lets the remote-browser viewer page see that one session and its desktop.
ALTER TABLE connect_sessions ADD COLUMN viewer_token_hash TEXT;
