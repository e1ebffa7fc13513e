-- A token's client and user are its grant's: the grant's foreign key alone ties a token to
-- them, and deleting a client or a user reaches its tokens through the grant's cascade.
-- The two foreign keys dropped here were checked on every token written (and locked the
-- client's and the user's rows), the token endpoint's hot path. (SQLite rebuilds the table
-- to drop them: this migration differs between the dialects.)

ALTER TABLE oauth_tokens
    DROP CONSTRAINT oauth_tokens_client_id_fkey,
    DROP CONSTRAINT oauth_tokens_user_id_fkey;
