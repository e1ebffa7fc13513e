-- One index serves both ways tokens are found other than by hash: every token of a grant
-- (revoking a linked app, refresh-token reuse, the grant's cascade) and every token of one
-- family within its grant (a replayed code or device code). A refresh writes two tokens:
-- each index on `oauth_tokens` is one more page changed per token written, on the token
-- endpoint's hot path.

DROP INDEX oauth_tokens_by_family;
DROP INDEX oauth_tokens_by_grant;
CREATE INDEX oauth_tokens_by_grant_family ON oauth_tokens (grant_id, family);
