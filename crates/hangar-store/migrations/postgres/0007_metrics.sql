-- Health history (issue 6). Keep in step with ../sqlite/0007_metrics.sql.
-- One row per (subject, resolution_s, at): resolution_s 0 is a raw sample taken at `at`;
-- 60 and 600 are aggregates of the bucket that starts at `at` (unix ms, aligned to the epoch).
-- Values are integers: CPU in hundredths of a percent, rates in bytes per second (rounded),
-- NULL where the sample had no value (the first reading has no rate). No foreign keys: the
-- history outlives nothing it must point to, and retention removes it.

CREATE TABLE node_samples (
    node_id                  TEXT    NOT NULL,
    resolution_s             BIGINT NOT NULL,
    at                       BIGINT NOT NULL,
    cpu_centipercent         BIGINT,
    cpu_count                BIGINT NOT NULL,
    memory_used_bytes        BIGINT NOT NULL,
    memory_total_bytes       BIGINT NOT NULL,
    disk_used_bytes          BIGINT NOT NULL,
    disk_total_bytes         BIGINT NOT NULL,
    net_rx_bytes_per_second  BIGINT,
    net_tx_bytes_per_second  BIGINT,
    sandboxes_running        BIGINT NOT NULL,
    PRIMARY KEY (node_id, resolution_s, at)
);

CREATE INDEX node_samples_by_age ON node_samples (resolution_s, at);

CREATE TABLE sandbox_samples (
    sandbox_id               TEXT    NOT NULL,
    resolution_s             BIGINT NOT NULL,
    at                       BIGINT NOT NULL,
    cpu_centipercent         BIGINT,
    memory_bytes             BIGINT NOT NULL,
    memory_limit_bytes       BIGINT,
    disk_bytes               BIGINT NOT NULL,
    net_rx_bytes_per_second  BIGINT,
    net_tx_bytes_per_second  BIGINT,
    pids                     BIGINT NOT NULL,
    PRIMARY KEY (sandbox_id, resolution_s, at)
);

CREATE INDEX sandbox_samples_by_age ON sandbox_samples (resolution_s, at);

-- How far each aggregate resolution has been computed (unix ms, exclusive).
CREATE TABLE metric_rollups (
    resolution_s  BIGINT NOT NULL PRIMARY KEY,
    done_until    BIGINT NOT NULL
);
