-- A sandbox's network policy: 'none' (loopback only) or 'egress' (outbound internet via NAT).
-- Sandboxes recorded before this column existed had loopback only.
ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT 'none';
