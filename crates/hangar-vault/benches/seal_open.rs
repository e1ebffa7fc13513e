//! Seal and open of a 4 KiB credential (target: under 50 µs each, issue 4).
//!
//! `cargo bench -p hangar-vault`. 100 000 timed iterations per case after 5 000 warm-up
//! iterations, timed in batches of 100 (one `Instant` pair per batch, so timer overhead stays
//! out of the figure); prints ns/op percentiles over the 1 000 batches.

use std::hint::black_box;
use std::time::Instant;

use hangar_vault::{AssociatedData, KeyRing, Vault};
use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};

const PAYLOAD_BYTES: usize = 4096;
const WARMUP: usize = 5_000;
const BATCH: usize = 100;
const BATCHES: usize = 1_000;

fn measure(name: &str, mut op: impl FnMut()) {
    for _ in 0..WARMUP {
        op();
    }
    let mut per_op_ns: Vec<f64> = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..BATCH {
            op();
        }
        per_op_ns.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    per_op_ns.sort_by(f64::total_cmp);
    let pct = |p: f64| per_op_ns[((per_op_ns.len() - 1) as f64 * p).round() as usize];
    let mean = per_op_ns.iter().sum::<f64>() / per_op_ns.len() as f64;
    println!(
        "{name:<28} p50 {:>8.0} ns/op   p90 {:>8.0}   p99 {:>8.0}   min {:>8.0}   mean {:>8.0}   ({} ops)",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        per_op_ns[0],
        mean,
        BATCH * BATCHES
    );
}

fn main() {
    let mut plaintext = vec![0u8; PAYLOAD_BYTES];
    OsRng.fill_bytes(&mut plaintext);
    let aad = AssociatedData::new("0190f0c2-7a4e-7d51-9c1e-3b7f0a1d2e3f", "claude_code", 1);
    let mut ring = KeyRing::generate(&mut OsRng);
    ring.rotate(&mut OsRng);
    let vault = Vault::new(ring);

    println!("hangar-vault: 4 KiB credential, AES-256-GCM envelope");
    measure("seal (OsRng)", || {
        black_box(vault.seal(black_box(&plaintext), &aad, &mut OsRng).ok());
    });
    let mut thread_rng = rand::thread_rng();
    measure("seal (ThreadRng)", || {
        black_box(
            vault
                .seal(black_box(&plaintext), &aad, &mut thread_rng)
                .ok(),
        );
    });
    let mut std_rng = StdRng::from_entropy();
    measure("seal (StdRng)", || {
        black_box(vault.seal(black_box(&plaintext), &aad, &mut std_rng).ok());
    });

    let record = vault
        .seal(&plaintext, &aad, &mut OsRng)
        .expect("seal for the open benchmark");
    assert_eq!(
        &vault.open(&record, &aad).expect("open")[..],
        &plaintext[..]
    );
    measure("open", || {
        black_box(vault.open(black_box(&record), &aad).ok());
    });

    let mut old = Vault::new(KeyRing::generate(&mut OsRng));
    let old_record = old.seal(&plaintext, &aad, &mut OsRng).expect("seal");
    old.keys_mut().rotate(&mut OsRng);
    measure("rewrap (v1 -> v2)", || {
        black_box(old.rewrap(black_box(&old_record), &mut OsRng).ok());
    });
}
